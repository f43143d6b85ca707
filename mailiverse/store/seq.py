"""The account's change numbers (revision 0013): every write to its objects takes the next one.

``users.store_seq`` is the number of the account's latest write. A put stamps its number on the object
(``objects.seq``); a delete or a move away writes a tombstone with its number. Numbers are taken under the account's
usage lock (``quota.lock_usage_txn``, held until commit; SQLite has one writer), so they commit in order, and a
client that has seen every change up to N misses nothing by asking for what came after N (store/changes.py).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.engine import Connection

from mailiverse.store.errors import UserNotFound
from mailiverse.store.schema import object_tombstones, users

#: Tombstones older than this are forgotten (and the account's floor moves past them).
TOMBSTONE_DAYS = 30

_BUMP = (
    update(users)
    .where(users.c.id == bindparam("user_id"))
    .values(store_seq=users.c.store_seq + bindparam("n"))
    .returning(users.c.store_seq)
)
_TOMBSTONE = insert(object_tombstones)


def next_seqs_txn(conn: Connection, user_id: int, count: int = 1) -> int:
    """Take ``count`` numbers for ``user_id``: the first of them (they run to first + count - 1).

    The caller holds the account's usage lock (the row lock this update takes is kept to the commit anyway)."""
    last = conn.execute(_BUMP, {"user_id": user_id, "n": count}).scalar_one_or_none()
    if last is None:
        raise UserNotFound("no such user")
    return int(last) - count + 1


def tombstone_txn(conn: Connection, user_id: int, paths: Sequence[str], now_ms: int) -> None:
    """Record that ``paths`` of ``user_id`` are gone (deleted, or moved to another path)."""
    if not paths:
        return
    first = next_seqs_txn(conn, user_id, len(paths))
    conn.execute(
        _TOMBSTONE,
        [{"user_id": user_id, "seq": first + i, "path": path, "deleted_ms": now_ms} for i, path in enumerate(paths)],
    )


def forget_all_txn(conn: Connection, user_id: int) -> None:
    """Every client of ``user_id`` lists everything again at its next sync (its objects all went at once)."""
    floor = next_seqs_txn(conn, user_id, 1)
    conn.execute(update(users).where(users.c.id == user_id).values(tombstone_floor=floor))
    conn.execute(delete(object_tombstones).where(object_tombstones.c.user_id == user_id))


def prune_tombstones_txn(conn: Connection, before_ms: int) -> int:
    """Forget tombstones deleted before ``before_ms``; each account's floor moves to the newest one forgotten.
    How many went."""
    floors = conn.execute(
        select(object_tombstones.c.user_id, func.max(object_tombstones.c.seq))
        .where(object_tombstones.c.deleted_ms < before_ms)
        .group_by(object_tombstones.c.user_id)
    ).all()
    for user_id, floor in floors:
        conn.execute(
            update(users).where(users.c.id == user_id, users.c.tombstone_floor < floor).values(tombstone_floor=floor)
        )
    if not floors:
        return 0
    gone = conn.execute(delete(object_tombstones).where(object_tombstones.c.deleted_ms < before_ms))
    return int(gone.rowcount or 0)


__all__ = ["TOMBSTONE_DAYS", "forget_all_txn", "next_seqs_txn", "prune_tombstones_txn", "tombstone_txn"]
