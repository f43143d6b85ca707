"""``mailiverse-admin user move-home``: an account's objects copied to another home, verified, the map flipped.

The steps (docs/homes.md), each safe to fail at: nothing is deleted before the map points at a verified copy.

1. The target gets an ``arriving`` copy of the account; everything is copied while mail keeps arriving at the source.
2. The source copy is marked ``leaving``: that update waits for writes in flight (their share lock), and later writes
   are refused there (HomeMoving: SMTP 451, the API 503, for the seconds of the flip; senders retry).
3. What changed since step 1 is copied again; both copies are counted and hashed (SHA-256 of every object's path,
   version and bytes); any difference aborts the move and leaves the account where it was.
4. The target copy becomes ``active`` and the map points at it, in one metabase transaction.
5. After front ends' cached map entries have expired, the source copy is deleted.

Runs in the admin command's process, blocking (``run_sync``/``transact_sync``); the appliance keeps serving.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection

from mailiverse.store.db import Database
from mailiverse.store.homes import (
    ACTIVE,
    ARRIVING,
    LEAVING,
    MAP_TTL_S,
    METABASE_HOME,
    MOVING,
    add_copy_txn,
    delete_copy_txn,
    home_of_txn,
    set_copy_state_txn,
    set_home_txn,
    set_map_state_txn,
)
from mailiverse.store.moving import delete_objects_txn
from mailiverse.store.schema import moved_mail, object_chunks, objects, screened_senders, user_homes, users

#: Objects copied per transaction (and at most this many bytes of chunks, whichever comes first).
COPY_BATCH = 200
COPY_BATCH_BYTES = 32 * 1024 * 1024


class HomeMoveError(Exception):
    """The move cannot start, or stopped; the account stays (or is back) where it was. The message says why."""


@dataclass(frozen=True)
class MoveReport:
    """What ``move_home`` did: the homes, the objects and bytes in the verified copy, its digest, and the time the
    account's writes were held (the flip)."""

    source: str
    target: str
    objects: int
    bytes: int
    digest: str
    held_s: float


@dataclass(frozen=True)
class _Listed:
    path: str
    version: int
    modified_ms: int
    size: int


def _listing_txn(conn: Connection, user_id: int) -> dict[str, _Listed]:
    rows = conn.execute(
        select(objects.c.path, objects.c.version, objects.c.modified_ms, objects.c.size).where(
            objects.c.user_id == user_id
        )
    )
    return {str(r[0]): _Listed(str(r[0]), int(r[1]), int(r[2]), int(r[3])) for r in rows}


def _read_objects_txn(conn: Connection, user_id: int, paths: list[str]) -> list[tuple[dict[str, Any], list[bytes]]]:
    """The rows and chunks of ``paths`` (those still present) of ``user_id``."""
    rows = conn.execute(select(objects).where(objects.c.user_id == user_id, objects.c.path.in_(paths))).mappings().all()
    out = []
    for row in rows:
        chunks = conn.execute(
            select(object_chunks.c.data).where(object_chunks.c.object_id == row["id"]).order_by(object_chunks.c.seq)
        ).scalars()
        out.append((dict(row), [bytes(c) for c in chunks]))
    return out


def _write_objects_txn(conn: Connection, user_id: int, items: list[tuple[dict[str, Any], list[bytes]]]) -> None:
    """Write ``items`` for ``user_id`` in this home, replacing what is at their paths (usage is set at the end)."""
    for row, chunks in items:
        conn.execute(delete(objects).where(objects.c.user_id == user_id, objects.c.path == row["path"]))
        object_id = conn.execute(
            insert(objects)
            .values(
                user_id=user_id,
                path=row["path"],
                version=row["version"],
                created_ms=row["created_ms"],
                modified_ms=row["modified_ms"],
                size=row["size"],
                seq=row["seq"],
            )
            .returning(objects.c.id)
        ).scalar_one()
        if chunks:
            conn.execute(
                insert(object_chunks), [{"object_id": object_id, "seq": i, "data": c} for i, c in enumerate(chunks)]
            )


def _delete_paths_txn(conn: Connection, user_id: int, paths: list[str]) -> None:
    conn.execute(delete(objects).where(objects.c.user_id == user_id, objects.c.path.in_(paths)))


def digest_txn(conn: Connection, user_id: int) -> tuple[int, int, str]:
    """(objects, bytes, SHA-256 over every object's path, version and bytes in path order) of ``user_id`` here."""
    total = hashlib.sha256()
    count = size = 0
    rows = conn.execute(
        select(objects.c.id, objects.c.path, objects.c.version)
        .where(objects.c.user_id == user_id)
        .order_by(objects.c.path)
    ).all()
    for object_id, path, version in rows:
        one = hashlib.sha256()
        for chunk in conn.execute(
            select(object_chunks.c.data).where(object_chunks.c.object_id == object_id).order_by(object_chunks.c.seq)
        ).scalars():
            one.update(chunk)
            size += len(chunk)
        encoded = str(path).encode("utf-8")
        total.update(len(encoded).to_bytes(4, "big") + encoded + int(version).to_bytes(8, "big") + one.digest())
        count += 1
    return count, size, total.hexdigest()


def _state_rows_txn(conn: Connection, user_id: int) -> dict[str, Any]:
    """The per-account state beside the objects: screened senders, moved-mail marks, usage and quota."""
    account = conn.execute(
        select(users.c.used_bytes, users.c.quota_bytes, users.c.screener, users.c.store_seq).where(
            users.c.id == user_id
        )
    ).first()
    return {
        "senders": [
            dict(r)
            for r in conn.execute(select(screened_senders).where(screened_senders.c.user_id == user_id)).mappings()
        ],
        "marks": [dict(r) for r in conn.execute(select(moved_mail).where(moved_mail.c.user_id == user_id)).mappings()],
        # The new home numbers on after the old one's latest write; its clients list everything once (the floor).
        "usage": None
        if account is None
        else {
            "used_bytes": account[0],
            "quota_bytes": account[1],
            "store_seq": int(account[3]) + 1,
            "tombstone_floor": int(account[3]) + 1,
        },
    }


def _put_state_txn(conn: Connection, user_id: int, state: dict[str, Any]) -> None:
    conn.execute(delete(screened_senders).where(screened_senders.c.user_id == user_id))
    conn.execute(delete(moved_mail).where(moved_mail.c.user_id == user_id))
    if state["senders"]:
        conn.execute(insert(screened_senders), state["senders"])
    if state["marks"]:
        conn.execute(insert(moved_mail), state["marks"])
    if state["usage"] is not None:
        conn.execute(update(users).where(users.c.id == user_id).values(**state["usage"]))


def _account_txn(conn: Connection, name: str) -> dict[str, Any] | None:
    row = conn.execute(select(users).where(users.c.name == name)).mappings().first()
    return None if row is None else dict(row)


def _map_state_txn(conn: Connection, user_id: int) -> str | None:
    state = conn.execute(select(user_homes.c.state).where(user_homes.c.user_id == user_id)).scalar()
    return None if state is None else str(state)


def _forget_in_metabase_txn(conn: Connection, user_id: int) -> None:
    """The metabase was the account's home: its objects go, its account row stays (it is the directory's)."""
    conn.execute(delete(screened_senders).where(screened_senders.c.user_id == user_id))
    conn.execute(delete(moved_mail).where(moved_mail.c.user_id == user_id))
    conn.execute(update(users).where(users.c.id == user_id).values(used_bytes=0, home_state=ACTIVE))


def move_home(
    meta: Database,
    homes: dict[str, Database],
    name: str,
    target: str,
    *,
    wait_s: float = 2 * MAP_TTL_S + 1,
    say: Callable[[str], None] = lambda _line: None,
    sleep: Callable[[float], None] = time.sleep,
) -> MoveReport:
    """Move the account ``name`` to the home ``target`` (steps in the module docstring); HomeMoveError if it
    cannot. ``homes`` maps every home's name (including ``metabase``) to its open database."""
    account = meta.run_sync(_account_txn, name)
    if account is None:
        raise HomeMoveError(f"no user named {name!r}")
    user_id = int(account["id"])
    if target not in homes or target == METABASE_HOME:
        raise HomeMoveError(
            f"no home is called {target!r}; the homes are {', '.join(h for h in homes if h != METABASE_HOME)}"
        )
    source = meta.run_sync(home_of_txn, user_id)
    if source == target:
        raise HomeMoveError(f"{name} lives in {target} already")
    if meta.run_sync(_map_state_txn, user_id) == MOVING:
        say(f"{name}: an earlier move did not finish; starting it again")
    old, new = homes[source], homes[target]
    if source != METABASE_HOME:
        meta.transact_sync(set_map_state_txn, user_id, MOVING)
    new.transact_sync(add_copy_txn, account, ARRIVING)
    held_from: float | None = None
    try:
        copied = _copy_changed(old, new, user_id)
        say(f"{name}: copied {copied} object(s) from {source} to {target}; holding its mail for the flip")
        held_from = time.monotonic()
        old.transact_sync(set_copy_state_txn, user_id, LEAVING)
        again = _copy_changed(old, new, user_id)
        new.transact_sync(_put_state_txn, user_id, old.run_sync(_state_rows_txn, user_id))
        before, after = old.run_sync(digest_txn, user_id), new.run_sync(digest_txn, user_id)
        if before != after:
            raise HomeMoveError(
                f"the copy in {target} does not match {source} ({after[0]} object(s) against {before[0]}); "
                "the account stays in " + source
            )
        say(f"{name}: {again} object(s) changed meanwhile; {before[0]} object(s), {before[1]} bytes verified")
        new.transact_sync(set_copy_state_txn, user_id, ACTIVE)
        meta.transact_sync(set_home_txn, user_id, target, ACTIVE)
    except BaseException:
        # Back where it was: the source takes writes again, the partial copy goes.
        old.transact_sync(set_copy_state_txn, user_id, ACTIVE)
        new.transact_sync(delete_copy_txn, user_id)
        if source != METABASE_HOME:
            meta.transact_sync(set_map_state_txn, user_id, ACTIVE)
        raise
    held_s = time.monotonic() - held_from
    say(f"{name}: now lives in {target} (mail held {held_s:.1f} s); deleting the copy in {source}")
    sleep(wait_s)
    while old.transact_sync(delete_objects_txn, user_id) > 0:
        pass
    if source == METABASE_HOME:
        old.transact_sync(_forget_in_metabase_txn, user_id)
    else:
        old.transact_sync(delete_copy_txn, user_id)
    return MoveReport(source, target, before[0], before[1], before[2], held_s)


def _copy_changed(old: Database, new: Database, user_id: int) -> int:
    """Copy what differs between the two homes' objects of ``user_id`` (new, changed, gone); how many objects."""
    there, here = old.run_sync(_listing_txn, user_id), new.run_sync(_listing_txn, user_id)
    gone = [path for path in here if path not in there]
    changed = sorted(path for path, item in there.items() if here.get(path) != item)
    if gone:
        for start in range(0, len(gone), COPY_BATCH):
            new.transact_sync(_delete_paths_txn, user_id, gone[start : start + COPY_BATCH])
    batch: list[str] = []
    weight = 0
    for path in changed:
        batch.append(path)
        weight += there[path].size
        if len(batch) >= COPY_BATCH or weight >= COPY_BATCH_BYTES:
            new.transact_sync(_write_objects_txn, user_id, old.run_sync(_read_objects_txn, user_id, batch))
            batch, weight = [], 0
    if batch:
        new.transact_sync(_write_objects_txn, user_id, old.run_sync(_read_objects_txn, user_id, batch))
    return len(changed) + len(gone)


__all__ = ["HomeMoveError", "MoveReport", "digest_txn", "move_home"]
