"""User records: synchronous repository functions on a Connection, returning frozen dataclasses."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, bindparam, delete, insert, or_, select, update
from sqlalchemy.engine import Connection, RowMapping
from sqlalchemy.exc import IntegrityError

from mailiverse.store.errors import (
    InvalidInput,
    UserExists,
    UserNotFound,
    VersionConflict,
)
from mailiverse.store.schema import alias_senders, aliases, legacy_store_credentials, users

ENVELOPE_FORMATS = frozenset({"v1", "v2"})
MAX_NAME_LENGTH = 254
MAX_PUBLIC_KEY_BYTES = 16 * 1024
MAX_KEY_BLOCK_BYTES = 64 * 1024
MAX_SRP_FIELD_BYTES = 2 * 1024
MAX_SRP_GROUP_LENGTH = 64
#: Longest stored KDF description (compact JSON; mailiverse.crypto.kdf checks its content).
MAX_KDF_LENGTH = 512


@dataclass(frozen=True)
class User:
    """One account as stored; secrets here are only public or encrypted material and SRP verifiers."""

    id: int
    name: str
    created_ms: int
    envelope_format: str
    public_key: bytes
    legacy: bool
    srp_salt: bytes | None
    srp_verifier: bytes | None
    srp_group: str | None
    key_block: bytes | None
    key_block_version: int
    disabled: bool
    #: The password KDF description (compact JSON), or None for the original fixed-salt PBKDF2 rule.
    kdf: str | None = None
    #: Bytes of stored objects, and the account's own quota (None: the appliance default; store/quota.py).
    used_bytes: int = 0
    quota_bytes: int | None = None
    #: Whether mail from first-time senders goes to the screener (store/screener.py).
    screener: bool = False
    #: The address the account moved to (docs/moving.md), when, and until when its mail is forwarded there;
    #: None: it has not moved.
    moved_to: str | None = None
    moved_ms: int | None = None
    forward_until_ms: int | None = None

    def __repr__(self) -> str:
        # Keep verifiers and key blocks out of logs and tracebacks.
        return (
            f"User(id={self.id}, name={self.name!r}, envelope_format={self.envelope_format!r}, "
            f"legacy={self.legacy}, disabled={self.disabled})"
        )


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def canonical_name(name: object) -> str:
    """The stored form of a user name: lower case; raises InvalidInput for unusable names."""
    if not isinstance(name, str):
        raise InvalidInput("user name must be a string")
    canonical = name.lower()
    if not canonical:
        raise InvalidInput("user name is empty")
    if len(canonical) > MAX_NAME_LENGTH:
        raise InvalidInput(f"user name is longer than {MAX_NAME_LENGTH} characters")
    if not canonical.isprintable() or any(c.isspace() or c in "/\\" for c in canonical):
        raise InvalidInput("user name may not contain spaces, control characters, '/' or '\\'")
    try:
        canonical.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput("user name is not valid Unicode text") from None
    return canonical


def _check_bytes(value: object, what: str, limit: int, *, allow_empty: bool = False) -> bytes:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise InvalidInput(f"{what} must be bytes")
    data = bytes(value)
    if not data and not allow_empty:
        raise InvalidInput(f"{what} is empty")
    if len(data) > limit:
        raise InvalidInput(f"{what} is longer than {limit} bytes")
    return data


def _user(row: RowMapping) -> User:
    return User(
        id=row["id"],
        name=row["name"],
        created_ms=row["created_ms"],
        envelope_format=row["envelope_format"],
        public_key=bytes(row["public_key"]),
        legacy=bool(row["legacy"]),
        srp_salt=None if row["srp_salt"] is None else bytes(row["srp_salt"]),
        srp_verifier=None if row["srp_verifier"] is None else bytes(row["srp_verifier"]),
        srp_group=row["srp_group"],
        key_block=None if row["key_block"] is None else bytes(row["key_block"]),
        key_block_version=row["key_block_version"],
        disabled=bool(row["disabled"]),
        kdf=row["kdf"],
        used_bytes=row["used_bytes"],
        quota_bytes=row["quota_bytes"],
        screener=bool(row["screener"]),
        moved_to=row["moved_to"],
        moved_ms=row["moved_ms"],
        forward_until_ms=row["forward_until_ms"],
    )


def user_of_row(row: Any) -> User:
    """A ``User`` from a mapping row of the users table (for queries that join it)."""
    return _user(row)


def add_user_txn(
    conn: Connection,
    name: str,
    public_key_der: bytes,
    envelope_format: str,
    *,
    legacy: bool = False,
    now_ms: int | None = None,
) -> User:
    """Create a user; raises UserExists if the canonical name is taken, InvalidInput for bad fields."""
    canonical = canonical_name(name)
    public_key = _check_bytes(public_key_der, "public key", MAX_PUBLIC_KEY_BYTES)
    if envelope_format not in ENVELOPE_FORMATS:
        raise InvalidInput("envelope format must be 'v1' or 'v2'")
    values: dict[str, Any] = {
        "name": canonical,
        "created_ms": _now_ms() if now_ms is None else now_ms,
        "envelope_format": envelope_format,
        "public_key": public_key,
        "legacy": bool(legacy),
    }
    # A savepoint keeps the caller's transaction usable after a duplicate (PostgreSQL aborts it otherwise).
    try:
        with conn.begin_nested():
            row = conn.execute(insert(users).values(values).returning(*users.c)).mappings().one()
    except IntegrityError:
        raise UserExists(f"a user named {canonical!r} already exists") from None
    return _user(row)


#: Prebuilt (SQLAlchemy then skips construction and cache-key work): RCPT TO looks a user up per recipient.
_USER_BY_NAME = select(users).where(users.c.name == bindparam("name"))


def get_user_txn(conn: Connection, name: str) -> User | None:
    """The user with this name (case-insensitive), or None (also for names that could never exist)."""
    try:
        canonical = canonical_name(name)
    except InvalidInput:
        return None
    row = conn.execute(_USER_BY_NAME, {"name": canonical}).mappings().first()
    return None if row is None else _user(row)


_USERS_BY_NAME = select(users).where(users.c.name.in_(bindparam("names", expanding=True)))


def get_users_txn(conn: Connection, names: Sequence[str]) -> dict[str, User]:
    """``get_user_txn`` for many names in one query: each name asked for (as given) that has a user."""
    canonical: dict[str, list[str]] = {}
    for name in names:
        usable = _canonical_or_none(name)
        if usable is not None:
            canonical.setdefault(usable, []).append(name)
    if not canonical:
        return {}
    found: dict[str, User] = {}
    # One name (an idle appliance) takes the prebuilt statement: an IN list is rendered per call.
    parameters: dict[str, Any]
    if len(canonical) == 1:
        statement, parameters = _USER_BY_NAME, {"name": next(iter(canonical))}
    else:
        statement, parameters = _USERS_BY_NAME, {"names": list(canonical)}
    for row in conn.execute(statement, parameters).mappings():
        user = _user(row)
        for asked in canonical.get(user.name, ()):
            found[asked] = user
    return found


def _canonical_or_none(name: str) -> str | None:
    try:
        return canonical_name(name)
    except InvalidInput:
        return None


def get_user_by_id_txn(conn: Connection, user_id: int) -> User | None:
    """The user with this id, or None."""
    row = conn.execute(select(users).where(users.c.id == user_id)).mappings().first()
    return None if row is None else _user(row)


def list_users_txn(conn: Connection) -> list[User]:
    """Every user, by name."""
    return [_user(row) for row in conn.execute(select(users).order_by(users.c.name)).mappings()]


def delete_user_txn(conn: Connection, user_id: int) -> bool:
    """Delete a user and (by cascade) every object; False if there was no such user. Its aliases become
    tombstones (their hashes only): refused at RCPT and never issued again."""
    owned = select(aliases.c.id).where(aliases.c.user_id == user_id).scalar_subquery()
    conn.execute(delete(alias_senders).where(alias_senders.c.alias_id.in_(owned)))
    conn.execute(
        update(aliases)
        .where(aliases.c.user_id == user_id)
        .values(state="deleted", user_id=None, sealed_address=None, label=None, received=0, last_used_ms=None)
    )
    return conn.execute(delete(users).where(users.c.id == user_id)).rowcount > 0


def _update_user_txn(conn: Connection, user_id: int, values: dict[str, Any], *extra: Any) -> User:
    statement = update(users).where(users.c.id == user_id, *extra).values(values).returning(*users.c)
    row = conn.execute(statement).mappings().first()
    if row is None:
        if get_user_by_id_txn(conn, user_id) is None:
            raise UserNotFound("no such user")
        raise VersionConflict("the key block changed since it was read")
    return _user(row)


def _check_kdf(kdf: object) -> str | None:
    if kdf is not None and (not isinstance(kdf, str) or not kdf or len(kdf) > MAX_KDF_LENGTH):
        raise InvalidInput(f"the KDF description must be text of 1 to {MAX_KDF_LENGTH} characters")
    return kdf


def update_user_auth_txn(
    conn: Connection,
    user_id: int,
    *,
    srp_salt: bytes,
    srp_verifier: bytes,
    srp_group: str,
    key_block: bytes | None = None,
    if_key_block_version: int | None = None,
    kdf: str | None = None,
) -> User:
    """Replace the SRP salt, verifier and group, the KDF description, and with ``key_block`` the key block.

    ``kdf`` is the description the new verifier and key block were made with; None (the default) is
    the original fixed-salt PBKDF2 rule, which every caller that gives none still uses. A new key
    block increments ``key_block_version``; ``if_key_block_version`` makes the change conditional
    (VersionConflict otherwise). Raises UserNotFound for an unknown id.
    """
    if not isinstance(srp_group, str) or not srp_group or len(srp_group) > MAX_SRP_GROUP_LENGTH:
        raise InvalidInput(f"SRP group must be a name of 1 to {MAX_SRP_GROUP_LENGTH} characters")
    values: dict[str, Any] = {
        "srp_salt": _check_bytes(srp_salt, "SRP salt", MAX_SRP_FIELD_BYTES),
        "srp_verifier": _check_bytes(srp_verifier, "SRP verifier", MAX_SRP_FIELD_BYTES),
        "srp_group": srp_group,
        "kdf": _check_kdf(kdf),
    }
    if key_block is not None:
        values["key_block"] = _check_bytes(key_block, "key block", MAX_KEY_BLOCK_BYTES)
        values["key_block_version"] = users.c.key_block_version + 1
    condition = [] if if_key_block_version is None else [users.c.key_block_version == if_key_block_version]
    return _update_user_txn(conn, user_id, values, *condition)


def change_auth_txn(
    conn: Connection,
    user_id: int,
    *,
    srp_salt: bytes,
    srp_verifier: bytes,
    srp_group: str,
    key_block: bytes | None,
    if_key_block_version: int | None = None,
    kdf: str | None = None,
) -> User:
    """Replace the password's data: the SRP verifier, the key block (made with the KDF description ``kdf``).

    Every MV store credential of the account (bound to it, or unbound for its name) is revoked with
    it: those keys were given out under the old password (password changes, legacy upgrades).
    """
    user = update_user_auth_txn(
        conn,
        user_id,
        srp_salt=srp_salt,
        srp_verifier=srp_verifier,
        srp_group=srp_group,
        key_block=key_block,
        if_key_block_version=if_key_block_version,
        kdf=kdf,
    )
    conn.execute(
        delete(legacy_store_credentials).where(
            or_(
                legacy_store_credentials.c.user_id == user.id,
                and_(legacy_store_credentials.c.name == user.name, legacy_store_credentials.c.user_id.is_(None)),
            )
        )
    )
    return user


def set_key_block_txn(conn: Connection, user_id: int, key_block: bytes, *, if_version: int | None = None) -> User:
    """Store a new encrypted key block, incrementing its version; conditional with ``if_version``."""
    values: dict[str, Any] = {
        "key_block": _check_bytes(key_block, "key block", MAX_KEY_BLOCK_BYTES),
        "key_block_version": users.c.key_block_version + 1,
    }
    condition = [] if if_version is None else [users.c.key_block_version == if_version]
    return _update_user_txn(conn, user_id, values, *condition)


def set_disabled_txn(conn: Connection, user_id: int, disabled: bool) -> User:
    """Disable or re-enable an account; raises UserNotFound for an unknown id."""
    return _update_user_txn(conn, user_id, {"disabled": bool(disabled)})


def deliverable_keys_txn(conn: Connection, user_ids: Sequence[int]) -> dict[int, bytes]:
    """The public key of each of ``user_ids`` whose account exists and is enabled.

    Delivery checks this inside its write transaction, so an account deleted or disabled after the
    recipient was accepted gets nothing, without a separate read before the write.
    """
    return {user_id: target.public_key for user_id, target in delivery_targets_txn(conn, user_ids).items()}


@dataclass(frozen=True)
class DeliveryTarget:
    """What a delivery checks of an account in its write transaction: its key now, and its usage."""

    public_key: bytes
    used_bytes: int
    quota_bytes: int | None


_DELIVERY_TARGETS = select(users.c.id, users.c.public_key, users.c.used_bytes, users.c.quota_bytes).where(
    users.c.id.in_(bindparam("ids", expanding=True)),
    users.c.disabled.is_(False),
    # A home's copy of an account being moved to another home takes no mail (store/homes.py).
    users.c.home_state == "active",
)


def delivery_targets_txn(conn: Connection, user_ids: Sequence[int]) -> dict[int, DeliveryTarget]:
    """Each of ``user_ids`` whose account exists and is enabled, with its key and usage: one statement."""
    ids = list(dict.fromkeys(user_ids))
    if not ids:
        return {}
    return {
        row[0]: DeliveryTarget(bytes(row[1]), int(row[2]), None if row[3] is None else int(row[3]))
        for row in conn.execute(_DELIVERY_TARGETS, {"ids": ids})
    }
