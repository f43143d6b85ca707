"""The ``pending_logins`` table: sealed SRP challenges between the two login round trips, taken at most once.

Synchronous repository functions on a Connection, run through the ``Database`` door. Rows hold the
SHA-256 of a handle and a sealed state that only the holder of the handle can open
(``mailiverse.auth.pending``); this module never sees either secret.
"""

from __future__ import annotations

from sqlalchemy import delete, func, insert, select
from sqlalchemy.engine import Connection

from mailiverse.store.errors import InvalidInput
from mailiverse.store.schema import pending_logins, pending_second_factors

#: Length of a handle digest (SHA-256).
HANDLE_HASH_BYTES = 32
#: Largest sealed state accepted in either direction.
MAX_SEALED_BYTES = 4096


def _check(handle_hash: bytes) -> None:
    if not isinstance(handle_hash, bytes) or len(handle_hash) != HANDLE_HASH_BYTES:
        raise InvalidInput("a pending-login handle digest is 32 bytes")


def add_pending_login_txn(
    conn: Connection,
    handle_hash: bytes,
    expires_ms: int,
    sealed_state: bytes,
    *,
    now_ms: int,
    max_entries: int,
) -> int:
    """Store one pending login; first drop expired rows and, at ``max_entries``, the oldest ones.

    Returns how many rows were dropped to make room (expired or evicted).
    """
    _check(handle_hash)
    if not isinstance(sealed_state, bytes) or not 0 < len(sealed_state) <= MAX_SEALED_BYTES:
        raise InvalidInput("a sealed pending login has an impossible size")
    if max_entries < 1:
        raise InvalidInput("max_entries must be at least 1")
    dropped = purge_expired_pending_logins_txn(conn, now_ms)
    excess = count_pending_logins_txn(conn) - max_entries + 1
    if excess > 0:
        oldest = (
            select(pending_logins.c.handle_hash)
            .order_by(pending_logins.c.expires_ms, pending_logins.c.handle_hash)
            .limit(excess)
            .scalar_subquery()
        )
        dropped += int(conn.execute(delete(pending_logins).where(pending_logins.c.handle_hash.in_(oldest))).rowcount)
    conn.execute(
        insert(pending_logins).values(handle_hash=handle_hash, expires_ms=expires_ms, sealed_state=sealed_state)
    )
    return dropped


def take_pending_login_txn(conn: Connection, handle_hash: bytes) -> tuple[int, bytes] | None:
    """Delete the row for ``handle_hash`` and return ``(expires_ms, sealed_state)``, or None if there is none.

    One ``DELETE ... RETURNING`` statement: of two front ends taking the same handle at once, only
    one gets the row (the other's delete finds nothing), on SQLite and PostgreSQL alike.
    Expiry is the caller's to check, so an expired row is removed all the same.
    """
    _check(handle_hash)
    row = conn.execute(
        delete(pending_logins)
        .where(pending_logins.c.handle_hash == handle_hash)
        .returning(pending_logins.c.expires_ms, pending_logins.c.sealed_state)
    ).first()
    if row is None:
        return None
    return int(row[0]), bytes(row[1])


def purge_expired_pending_logins_txn(conn: Connection, now_ms: int) -> int:
    """Delete every row whose deadline is at or before ``now_ms``; how many."""
    return int(conn.execute(delete(pending_logins).where(pending_logins.c.expires_ms <= now_ms)).rowcount)


def purge_expired_pending_txn(conn: Connection, now_ms: int) -> int:
    """Delete every second-factor ceremony (store/secondfactor.py) whose deadline is at or before ``now_ms``; how
    many. Here, beside the pending logins' purge, so the periodic purge needs no second-factor module loaded."""
    table = pending_second_factors
    return int(conn.execute(delete(table).where(table.c.expires_ms <= now_ms)).rowcount)


def count_pending_logins_txn(conn: Connection) -> int:
    """How many pending logins are stored (expired ones included until purged)."""
    return int(conn.execute(select(func.count()).select_from(pending_logins)).scalar_one())


__all__ = [
    "HANDLE_HASH_BYTES",
    "MAX_SEALED_BYTES",
    "add_pending_login_txn",
    "count_pending_logins_txn",
    "purge_expired_pending_logins_txn",
    "take_pending_login_txn",
]
