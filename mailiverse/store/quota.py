"""Per-account storage quotas: the usage counter every put and delete keeps, and the quota it is held to.

``users.used_bytes`` is the sum of the sizes of the account's objects. It changes only inside the
transaction that puts or deletes an object (``objects.put_object_txn``, ``objects.delete_object_txn``),
so it cannot drift from the objects: both commit or neither does. ``users.quota_bytes`` is the
account's own quota; NULL means the appliance default, which callers pass in (``--default-quota``).

Writers take the account's row lock first (``lock_usage_txn``, a no-op on SQLite, whose single writer
serialises them anyway): a replacing put reads the old size under it, and every transaction locks
accounts in id order before touching their objects, so concurrent writers on PostgreSQL wait for
each other instead of deadlocking.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.engine import Connection

from mailiverse.config import MAX_QUOTA_BYTES
from mailiverse.store.errors import InvalidInput, OverQuota, UserNotFound
from mailiverse.store.schema import objects, users


@dataclass(frozen=True)
class Usage:
    """An account's stored bytes and its own quota (None: the appliance default)."""

    used_bytes: int
    quota_bytes: int | None

    def limit(self, default_quota: int) -> int:
        """The quota that applies: the account's own, else ``default_quota``."""
        return default_quota if self.quota_bytes is None else self.quota_bytes

    def is_full(self, default_quota: int) -> bool:
        """Whether the account has no room left (it may have gone past its quota by a Sent copy)."""
        return self.used_bytes >= self.limit(default_quota)


_CHARGE = (
    update(users)
    .where(users.c.id == bindparam("user_id"))
    .values(used_bytes=users.c.used_bytes + bindparam("delta"))
    .returning(users.c.used_bytes, users.c.quota_bytes)
)


def lock_usage_txn(conn: Connection, user_ids: Iterable[int]) -> None:
    """Lock the usage rows of ``user_ids`` until the transaction ends, in id order (PostgreSQL only).

    ``FOR NO KEY UPDATE``: the lock an UPDATE of the counter takes, which does not block the
    foreign-key checks of inserted objects.
    """
    if conn.dialect.name == "sqlite":
        return
    ids = sorted(set(user_ids))
    if ids:
        statement = select(users.c.id).where(users.c.id.in_(ids)).order_by(users.c.id)
        conn.execute(statement.with_for_update(key_share=True)).all()


def charge_txn(conn: Connection, user_id: int, delta: int, *, default_quota: int | None = None) -> int:
    """Add ``delta`` bytes to the account's usage; its new usage.

    With ``default_quota``, a growth that takes the usage past the quota (the account's own, else
    this default) raises OverQuota; the caller's transaction must then be rolled back. Without it
    the change is counted and never refused. Raises UserNotFound for an unknown id.
    """
    row = conn.execute(_CHARGE, {"user_id": user_id, "delta": delta}).first()
    if row is None:
        raise UserNotFound("no such user")
    used, own = int(row[0]), row[1]
    if default_quota is not None and delta > 0:
        limit = default_quota if own is None else int(own)
        if used > limit:
            raise OverQuota(f"the account's storage quota of {limit} bytes would be exceeded")
    return used


_ADD_USAGE = (
    update(users).where(users.c.id == bindparam("user_id")).values(used_bytes=users.c.used_bytes + bindparam("delta"))
)


def add_usage_txn(conn: Connection, deltas: dict[int, int]) -> None:
    """Add each account's bytes to its usage in one ``executemany``, unchecked: the caller checked the quotas.

    For a batch of deliveries that read the usage rows (locked, on PostgreSQL) in the same transaction.
    """
    rows = [{"user_id": user_id, "delta": delta} for user_id, delta in sorted(deltas.items()) if delta]
    if rows:
        conn.execute(_ADD_USAGE, rows)


def get_usage_txn(conn: Connection, user_id: int) -> Usage:
    """The account's usage and own quota; raises UserNotFound."""
    row = conn.execute(select(users.c.used_bytes, users.c.quota_bytes).where(users.c.id == user_id)).first()
    if row is None:
        raise UserNotFound("no such user")
    return Usage(int(row[0]), None if row[1] is None else int(row[1]))


def check_quota(quota_bytes: object) -> int | None:
    """``quota_bytes`` if it is None or a whole number of bytes from 0 to MAX_QUOTA_BYTES; InvalidInput otherwise."""
    if quota_bytes is None:
        return None
    if isinstance(quota_bytes, bool) or not isinstance(quota_bytes, int) or not 0 <= quota_bytes <= MAX_QUOTA_BYTES:
        raise InvalidInput(f"a quota is a whole number of bytes from 0 to {MAX_QUOTA_BYTES}")
    return quota_bytes


def set_quota_txn(conn: Connection, user_id: int, quota_bytes: int | None) -> Usage:
    """Give the account its own quota, or (None) the appliance default; its usage after. Raises UserNotFound."""
    statement = (
        update(users)
        .where(users.c.id == user_id)
        .values(quota_bytes=check_quota(quota_bytes))
        .returning(users.c.used_bytes, users.c.quota_bytes)
    )
    row = conn.execute(statement).first()
    if row is None:
        raise UserNotFound("no such user")
    return Usage(int(row[0]), None if row[1] is None else int(row[1]))


def recount_usage_txn(conn: Connection) -> None:
    """Set every account's usage to the sum of its objects (after a restore that loaded rows directly)."""
    total = select(func.coalesce(func.sum(objects.c.size), 0)).where(objects.c.user_id == users.c.id).scalar_subquery()
    conn.execute(update(users).values(used_bytes=total))


__all__ = [
    "MAX_QUOTA_BYTES",
    "Usage",
    "charge_txn",
    "check_quota",
    "get_usage_txn",
    "lock_usage_txn",
    "recount_usage_txn",
    "set_quota_txn",
]
