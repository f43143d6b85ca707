"""Moving house in the database (docs/moving.md): an account's moved state, the keys an account brought from the
appliance it left, what of a moved account's mail was copied or forwarded, and the SHA-256 of every object (how a
client verifies a copy without downloading it twice).

The old appliance keeps a moved account whole: ``users.moved_to`` (and when, until when its mail is forwarded,
the log leaf of its moved record) changes how RCPT answers and what the forwarder does, nothing else. Received
mail is known by its key base in ``moved_mail``: the client marks what it copied before the switch; the forwarder
claims the rest (a lease, so appliance processes sharing the database never forward one message twice at once),
then marks it forwarded. Nothing here deletes an object except :func:`delete_objects_txn`, which runs only when
the user asks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, delete, false, func, insert, or_, select, update

from mailiverse.contracts import INBOX_FOLDER, SCREENER_FOLDER
from mailiverse.contracts.paths import prefix_upper_bound
from mailiverse.store.objects import get_object_info_txn, iter_object_chunks_txn, list_objects_txn, validate_prefix
from mailiverse.store.quota import charge_txn, lock_usage_txn
from mailiverse.store.schema import brought_keys, key_records, moved_mail, objects, users
from mailiverse.store.seq import forget_all_txn

#: The folders whose new mail a moved account's appliance forwards (each with its ``_Json`` twin folder).
FORWARDED_FOLDERS = (INBOX_FOLDER, SCREENER_FOLDER)
#: The states of ``moved_mail`` rows.
COPIED, FORWARDING, FORWARDED, UNFORWARDABLE = "copied", "forwarding", "forwarded", "unforwardable"
#: At most this many key bases in one ``mark_copied_txn`` (a request's worth).
MAX_MARKS = 1000
#: At most this many objects per digest page (each is read whole to hash it).
MAX_DIGESTS = 200


class KeyIdTaken(Exception):
    """A brought key's id is already a key of another account here (or brought by one)."""


@dataclass(frozen=True)
class MoveState:
    """Where an account moved and until when its mail is forwarded there."""

    moved_to: str
    moved_ms: int
    forward_until_ms: int
    leaf_index: int


@dataclass(frozen=True)
class BroughtKey:
    """A key an account brought along: its id, its DER public key, the address and signature that prove it."""

    key_id: str
    public_key: bytes
    address: str
    signature: bytes


@dataclass(frozen=True)
class Digest:
    """An object's path, size, SHA-256 (raw) and modification time."""

    path: str
    size: int
    sha256: bytes
    modified_ms: int


@dataclass(frozen=True)
class MovedAccount:
    """A moved account whose mail is still forwarded: who, where to, until when, and the key it sealed to."""

    user_id: int
    name: str
    moved_to: str
    moved_ms: int
    forward_until_ms: int
    key_id: str | None


# -- the switch ---------------------------------------------------------------------------------------


def move_state_txn(conn: Connection, user_id: int) -> MoveState | None:
    """The account's moved state, or None (it has not moved)."""
    row = conn.execute(
        select(users.c.moved_to, users.c.moved_ms, users.c.forward_until_ms, users.c.moved_leaf_index).where(
            users.c.id == user_id
        )
    ).first()
    if row is None or row.moved_to is None:
        return None
    return MoveState(str(row.moved_to), int(row.moved_ms), int(row.forward_until_ms), int(row.moved_leaf_index))


def switch_to_moved_txn(
    conn: Connection, user_id: int, *, to: str, moved_ms: int, forward_until_ms: int, leaf_index: int
) -> bool:
    """Mark the account moved to ``to``; False when it had moved already (nothing changes then)."""
    result = conn.execute(
        update(users)
        .where(users.c.id == user_id, users.c.moved_to.is_(None))
        .values(moved_to=to, moved_ms=moved_ms, forward_until_ms=forward_until_ms, moved_leaf_index=leaf_index)
    )
    return result.rowcount == 1


def moved_leaf_of_key_txn(conn: Connection, key_id: str) -> int | None:
    """The log leaf of the moved record of the (enabled) account that holds ``key_id``, or None."""
    leaf = conn.execute(
        select(users.c.moved_leaf_index)
        .select_from(key_records.join(users, users.c.id == key_records.c.user_id))
        .where(key_records.c.key_id == key_id, users.c.disabled == false(), users.c.moved_to.is_not(None))
    ).scalar()
    return None if leaf is None else int(leaf)


# -- brought keys ---------------------------------------------------------------------------------------


def add_brought_keys_txn(conn: Connection, user_id: int, keys: Sequence[BroughtKey], now_ms: int) -> list[str]:
    """Register ``keys`` as keys the account holds; the ids newly added (one it brought before is kept as is).

    KeyIdTaken when an id is another account's (a key of its own here, or one it brought), or when the account
    brought a different key under that id before: a key id names one key for one account here.
    """
    added: list[str] = []
    for key in keys:
        owner = conn.execute(select(key_records.c.user_id).where(key_records.c.key_id == key.key_id)).first()
        if owner is not None and owner.user_id != user_id:
            raise KeyIdTaken(f"the key id {key.key_id} belongs to another key here")
        known = conn.execute(
            select(brought_keys.c.user_id, brought_keys.c.public_key).where(brought_keys.c.key_id == key.key_id)
        ).first()
        if known is not None:
            if known.user_id != user_id or bytes(known.public_key) != key.public_key:
                raise KeyIdTaken(f"the key id {key.key_id} was brought with another key or by another account")
            continue
        conn.execute(
            insert(brought_keys).values(
                key_id=key.key_id,
                user_id=user_id,
                public_key=key.public_key,
                address=key.address,
                signature=key.signature,
                created_ms=now_ms,
            )
        )
        added.append(key.key_id)
    return added


def brought_keys_of_txn(conn: Connection, user_id: int) -> list[BroughtKey]:
    """The keys the account brought along, oldest first."""
    rows = conn.execute(
        select(brought_keys).where(brought_keys.c.user_id == user_id).order_by(brought_keys.c.created_ms)
    )
    return [BroughtKey(r.key_id, bytes(r.public_key), r.address, bytes(r.signature)) for r in rows]


# -- what was copied, what is forwarded ----------------------------------------------------------------


def _insert_ignoring_txn(conn: Connection, rows: list[dict[str, Any]]) -> list[str]:
    """Insert ``moved_mail`` rows, leaving any key base already there as it is; the key bases inserted."""
    statement: Any
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        statement = postgresql_insert(moved_mail)
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        statement = sqlite_insert(moved_mail)
    statement = statement.on_conflict_do_nothing(index_elements=["user_id", "key_base"])
    inserted = []
    for row in rows:
        if conn.execute(statement.values(row).returning(moved_mail.c.key_base)).first() is not None:
            inserted.append(str(row["key_base"]))
    return inserted


def mark_copied_txn(conn: Connection, user_id: int, key_bases: Iterable[str], now_ms: int) -> None:
    """Mark received mail the client copied to the new appliance (and verified there): never forwarded."""
    rows = [
        {"user_id": user_id, "key_base": key_base, "state": COPIED, "changed_ms": now_ms}
        for key_base in dict.fromkeys(key_bases)
    ]
    if rows:
        _insert_ignoring_txn(conn, rows)


def mail_states_txn(conn: Connection, user_id: int) -> dict[str, int]:
    """How many of the account's key bases are in each state."""
    rows = conn.execute(
        select(moved_mail.c.state, func.count()).where(moved_mail.c.user_id == user_id).group_by(moved_mail.c.state)
    )
    return {str(state): int(count) for state, count in rows}


def moved_accounts_txn(conn: Connection, now_ms: int) -> list[MovedAccount]:
    """The enabled moved accounts whose grace period runs at ``now_ms``, with their current key id."""
    rows = conn.execute(
        select(
            users.c.id, users.c.name, users.c.moved_to, users.c.moved_ms, users.c.forward_until_ms, key_records.c.key_id
        )
        .select_from(
            users.outerjoin(key_records, and_(key_records.c.user_id == users.c.id, key_records.c.status == "current"))
        )
        .where(users.c.moved_to.is_not(None), users.c.forward_until_ms > now_ms, users.c.disabled == false())
        .order_by(users.c.id)
    )
    found: dict[int, MovedAccount] = {}
    for r in rows:
        found.setdefault(
            int(r.id), MovedAccount(int(r.id), r.name, r.moved_to, int(r.moved_ms), int(r.forward_until_ms), r.key_id)
        )
    return list(found.values())


def _folder_range(folder: str) -> Any:
    prefix = folder + "/"
    upper = prefix_upper_bound(prefix)
    condition = objects.c.path >= prefix
    return condition if upper is None else and_(condition, objects.c.path < upper)


def _marks_txn(conn: Connection, user_id: int, key_bases: Sequence[str]) -> dict[str, tuple[str, int]]:
    """The (state, changed_ms) of those of ``key_bases`` that have a row."""
    found: dict[str, tuple[str, int]] = {}
    unique = list(dict.fromkeys(key_bases))
    for start in range(0, len(unique), 500):
        rows = conn.execute(
            select(moved_mail.c.key_base, moved_mail.c.state, moved_mail.c.changed_ms).where(
                moved_mail.c.user_id == user_id, moved_mail.c.key_base.in_(unique[start : start + 500])
            )
        )
        for key_base, state, changed_ms in rows:
            found[str(key_base)] = (str(state), int(changed_ms))
    return found


def _received_txn(conn: Connection, user_id: int, since_ms: int) -> list[tuple[str, str]]:
    """(folder, key base) of every original in a forwarded folder modified at or after ``since_ms``, oldest first."""
    rows = conn.execute(
        select(objects.c.path)
        .where(
            objects.c.user_id == user_id,
            objects.c.modified_ms >= since_ms,
            or_(*(_folder_range(folder) for folder in FORWARDED_FOLDERS)),
        )
        .order_by(objects.c.modified_ms, objects.c.path)
    )
    received = []
    for (path,) in rows:
        folder, _, key_base = str(path).rpartition("/")
        if folder in FORWARDED_FOLDERS and key_base:
            received.append((folder, key_base))
    return received


def forward_candidates_txn(
    conn: Connection, user_id: int, *, since_ms: int, now_ms: int, lease_ms: int, limit: int
) -> list[tuple[str, str]]:
    """Received mail of the account still to forward, as (folder, key base), oldest first: each original in a
    forwarded folder modified at or after ``since_ms`` whose key base has no row, or a claim older than the
    lease (its forwarder died)."""
    received = _received_txn(conn, user_id, since_ms)
    marks = _marks_txn(conn, user_id, [key_base for _, key_base in received])
    stale = now_ms - lease_ms
    wanted: list[tuple[str, str]] = []
    for folder, key_base in received:
        mark = marks.get(key_base)
        if mark is None or (mark[0] == FORWARDING and mark[1] < stale):
            wanted.append((folder, key_base))
            if len(wanted) >= limit:
                break
    return wanted


def claim_txn(conn: Connection, user_id: int, key_base: str, *, now_ms: int, lease_ms: int) -> bool:
    """Claim one message for forwarding (True), unless it is marked already or another forwarder's claim is
    younger than the lease."""
    fresh = {"user_id": user_id, "key_base": key_base, "state": FORWARDING, "changed_ms": now_ms}
    if _insert_ignoring_txn(conn, [fresh]):
        return True
    row = conn.execute(
        select(moved_mail.c.state, moved_mail.c.changed_ms).where(
            moved_mail.c.user_id == user_id, moved_mail.c.key_base == key_base
        )
    ).first()
    if row is None or row.state != FORWARDING or int(row.changed_ms) >= now_ms - lease_ms:
        return False
    result = conn.execute(
        update(moved_mail)
        .where(
            moved_mail.c.user_id == user_id,
            moved_mail.c.key_base == key_base,
            moved_mail.c.state == FORWARDING,
            moved_mail.c.changed_ms == row.changed_ms,
        )
        .values(changed_ms=now_ms)
    )
    return result.rowcount == 1


def finish_txn(conn: Connection, user_id: int, key_base: str, state: str, now_ms: int) -> None:
    """Record how forwarding one message ended (``FORWARDED`` or ``UNFORWARDABLE``)."""
    conn.execute(
        update(moved_mail)
        .where(moved_mail.c.user_id == user_id, moved_mail.c.key_base == key_base)
        .values(state=state, changed_ms=now_ms)
    )


def read_mail_pair_txn(conn: Connection, user_id: int, folder: str, key_base: str) -> tuple[bytes, bytes | None] | None:
    """The stored original and twin ciphertext of one message (the twin None if missing); None if it is gone."""
    path, twin_path = f"{folder}/{key_base}", f"{folder}_Json/{key_base}"
    if get_object_info_txn(conn, user_id, path) is None:
        return None
    original = b"".join(iter_object_chunks_txn(conn, user_id, path))
    twin = None
    if get_object_info_txn(conn, user_id, twin_path) is not None:
        twin = b"".join(iter_object_chunks_txn(conn, user_id, twin_path))
    return original, twin


# -- digests, and the deletion the user asks for ------------------------------------------------------


def digests_txn(
    conn: Connection, user_id: int, *, prefix: str = "", after: str | None = None, limit: int
) -> list[Digest]:
    """Up to ``limit`` of the account's objects under ``prefix`` after the path ``after``, by path, each with
    its SHA-256 (read here, a chunk at a time)."""
    validate_prefix(prefix)
    found = []
    for info in list_objects_txn(conn, user_id, prefix, after=after, limit=max(1, min(limit, MAX_DIGESTS))):
        digest = hashlib.sha256()
        for chunk in iter_object_chunks_txn(conn, user_id, info.path):
            digest.update(chunk)
        found.append(Digest(info.path, info.size, digest.digest(), info.modified_ms))
    return found


def delete_objects_txn(conn: Connection, user_id: int, limit: int = 1000) -> int:
    """Delete up to ``limit`` of the account's objects (its usage freed); how many went (0: none is left)."""
    lock_usage_txn(conn, (user_id,))
    rows = conn.execute(
        select(objects.c.id, objects.c.size).where(objects.c.user_id == user_id).order_by(objects.c.id).limit(limit)
    ).all()
    if not rows:
        return 0
    conn.execute(delete(objects).where(objects.c.id.in_([row.id for row in rows])))
    forget_all_txn(conn, user_id)
    charge_txn(conn, user_id, -sum(int(row.size) for row in rows))
    return len(rows)


def pending_forward_count_txn(conn: Connection, user_id: int) -> int:
    """How many originals in the forwarded folders have no mark yet, or only a claim (not forwarded)."""
    received = _received_txn(conn, user_id, 0)
    marks = _marks_txn(conn, user_id, [key_base for _, key_base in received])
    return sum(1 for _, key_base in received if marks.get(key_base, (FORWARDING, 0))[0] == FORWARDING)


def forget_moved_mail_txn(conn: Connection, user_id: int) -> None:
    """Drop the account's copy and forwarding marks (after its objects were deleted)."""
    conn.execute(delete(moved_mail).where(moved_mail.c.user_id == user_id))


__all__ = [
    "COPIED",
    "FORWARDED",
    "FORWARDED_FOLDERS",
    "FORWARDING",
    "MAX_DIGESTS",
    "MAX_MARKS",
    "UNFORWARDABLE",
    "BroughtKey",
    "Digest",
    "KeyIdTaken",
    "MoveState",
    "MovedAccount",
    "add_brought_keys_txn",
    "brought_keys_of_txn",
    "claim_txn",
    "delete_objects_txn",
    "digests_txn",
    "finish_txn",
    "forget_moved_mail_txn",
    "forward_candidates_txn",
    "mail_states_txn",
    "mark_copied_txn",
    "move_state_txn",
    "moved_accounts_txn",
    "moved_leaf_of_key_txn",
    "pending_forward_count_txn",
    "read_mail_pair_txn",
    "switch_to_moved_txn",
]
