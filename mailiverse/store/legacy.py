"""Records of the legacy Mailiverse protocol: pending sign-ups, mail blocks, MV store credentials, captcha tokens.

Synchronous repository functions on a Connection, returning frozen dataclasses, like
``mailiverse.store.users``.  A legacy account is a ``users`` row with ``legacy`` set,
``envelope_format`` "v1" and ``srp_group`` :data:`LEGACY_SRP_GROUP`; until its server
environment (and so its public key) arrives it lives in ``legacy_pending``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Connection

from mailiverse.store import users as _users
from mailiverse.store.errors import InvalidInput, UserExists
from mailiverse.store.schema import (
    legacy_captcha_tokens,
    legacy_mail_blocks,
    legacy_pending,
    legacy_store_credentials,
    users,
)

#: ``users.srp_group`` of accounts that log in with the original 257-bit SRP variant.
LEGACY_SRP_GROUP = "mailiverse-legacy-257"
#: Largest stored mail block (base64 text) and key block.
MAX_MAIL_BLOCK_CHARS = 256 * 1024
MAX_KEY_BLOCK_BYTES = _users.MAX_KEY_BLOCK_BYTES
#: Unbound store credentials kept per name; older ones are dropped.
MAX_UNBOUND_CREDENTIALS = 4


@dataclass(frozen=True)
class LegacyLogin:
    """What the SRP server needs for one name: salt and verifier (``tc()`` bytes), and where they live."""

    kind: Literal["user", "pending"]
    name: str
    salt: bytes
    verifier: bytes
    user_id: int | None

    def __repr__(self) -> str:
        return f"LegacyLogin(kind={self.kind!r}, name={self.name!r}, user_id={self.user_id})"


@dataclass(frozen=True)
class StoreCredentials:
    """An MV store key pair; ``user_id`` is None until an authenticated mail block claims it."""

    key_id: str
    secret: bytes
    name: str
    user_id: int | None

    def __repr__(self) -> str:
        return f"StoreCredentials(name={self.name!r}, user_id={self.user_id})"


def find_login_txn(conn: Connection, name: str) -> LegacyLogin | None:
    """The legacy login data of ``name`` (a canonical local name), or None.

    A modern account, or a legacy account that was upgraded, has none: the legacy protocol
    refuses it.
    """
    user = _users.get_user_txn(conn, name)
    if user is not None:
        if (
            not user.legacy
            or user.disabled
            or user.srp_group != LEGACY_SRP_GROUP
            or user.srp_salt is None
            or user.srp_verifier is None
        ):
            return None
        return LegacyLogin("user", user.name, user.srp_salt, user.srp_verifier, user.id)
    row = conn.execute(select(legacy_pending).where(legacy_pending.c.name == name)).mappings().first()
    if row is None:
        return None
    return LegacyLogin("pending", row["name"], bytes(row["srp_salt"]), bytes(row["srp_verifier"]), None)


def name_taken_txn(conn: Connection, name: str) -> bool:
    """Whether an account (complete or pending) already has ``name``."""
    if _users.get_user_txn(conn, name) is not None:
        return True
    found = conn.execute(select(legacy_pending.c.name).where(legacy_pending.c.name == name)).first()
    return found is not None


def count_accounts_txn(conn: Connection) -> int:
    """Accounts of every kind plus pending legacy sign-ups."""
    total = conn.execute(select(func.count()).select_from(users)).scalar_one()
    pending = conn.execute(select(func.count()).select_from(legacy_pending)).scalar_one()
    return int(total) + int(pending)


def expire_pending_txn(conn: Connection, before_ms: int) -> int:
    """Forget sign-ups that never delivered their server environment; how many went."""
    return conn.execute(delete(legacy_pending).where(legacy_pending.c.created_ms < before_ms)).rowcount


def add_pending_txn(
    conn: Connection,
    name: str,
    salt: bytes,
    verifier: bytes,
    *,
    now_ms: int,
    max_accounts: int,
) -> None:
    """Record a new legacy sign-up; UserExists if the name is taken, InvalidInput when full."""
    if name_taken_txn(conn, name):
        raise UserExists("name taken")
    if count_accounts_txn(conn) >= max_accounts:
        raise InvalidInput("no room for more accounts")
    conn.execute(
        insert(legacy_pending).values(
            name=name,
            srp_salt=bytes(salt),
            srp_verifier=bytes(verifier),
            key_block=None,
            created_ms=now_ms,
        )
    )


def get_key_block_txn(conn: Connection, login: LegacyLogin) -> bytes | None:
    """The stored key block of this account, or None."""
    if login.kind == "user":
        user = _users.get_user_by_id_txn(conn, login.user_id or 0)
        return None if user is None else user.key_block
    row = conn.execute(select(legacy_pending.c.key_block).where(legacy_pending.c.name == login.name)).first()
    return None if row is None or row[0] is None else bytes(row[0])


def set_key_block_txn(conn: Connection, login: LegacyLogin, block: bytes) -> None:
    """Replace the key block of this account."""
    if len(block) > MAX_KEY_BLOCK_BYTES:
        raise InvalidInput("key block too large")
    if login.kind == "user":
        _users.set_key_block_txn(conn, login.user_id or 0, block)
        return
    conn.execute(update(legacy_pending).where(legacy_pending.c.name == login.name).values(key_block=bytes(block)))


def get_mail_block_txn(conn: Connection, user_id: int) -> str | None:
    """The stored (encrypted, base64) mail block of a complete account, or None."""
    row = conn.execute(select(legacy_mail_blocks.c.block).where(legacy_mail_blocks.c.user_id == user_id)).first()
    return None if row is None else str(row[0])


def put_mail_block_txn(
    conn: Connection,
    login: LegacyLogin,
    *,
    public_key_der: bytes,
    block: str,
    key_id: str | None,
    now_ms: int,
) -> int:
    """Store a server environment: completes a pending account, binds its MV key id; the user id.

    ``key_id``, when given, must name credentials made for this account's name and not bound
    to another account (InvalidInput otherwise), so store credentials only ever serve the
    account that proved its password.
    """
    if len(block) > MAX_MAIL_BLOCK_CHARS:
        raise InvalidInput("mail block too large")
    if key_id is not None:
        creds = get_credentials_txn(conn, key_id)
        if creds is None or creds.name != login.name:
            raise InvalidInput("unknown store credentials")
        if creds.user_id is not None and creds.user_id != login.user_id:
            raise InvalidInput("store credentials belong to another account")
    if login.kind == "pending":
        pending = conn.execute(select(legacy_pending).where(legacy_pending.c.name == login.name)).mappings().first()
        if pending is None:
            raise InvalidInput("the sign-up expired")
        user = _users.add_user_txn(conn, login.name, public_key_der, "v1", legacy=True, now_ms=now_ms)
        _users.update_user_auth_txn(
            conn,
            user.id,
            srp_salt=bytes(pending["srp_salt"]),
            srp_verifier=bytes(pending["srp_verifier"]),
            srp_group=LEGACY_SRP_GROUP,
            key_block=None if pending["key_block"] is None else bytes(pending["key_block"]),
        )
        conn.execute(delete(legacy_pending).where(legacy_pending.c.name == login.name))
        user_id = user.id
    else:
        user_id = login.user_id or 0
        conn.execute(update(users).where(users.c.id == user_id).values(public_key=public_key_der))
    updated = conn.execute(
        update(legacy_mail_blocks)
        .where(legacy_mail_blocks.c.user_id == user_id)
        .values(block=block, modified_ms=now_ms)
    ).rowcount
    if not updated:
        conn.execute(insert(legacy_mail_blocks).values(user_id=user_id, block=block, modified_ms=now_ms))
    if key_id is not None:
        conn.execute(
            update(legacy_store_credentials).where(legacy_store_credentials.c.key_id == key_id).values(user_id=user_id)
        )
    return user_id


def delete_account_txn(conn: Connection, login: LegacyLogin) -> None:
    """Remove a legacy account: its user row (objects, blocks and credentials go by cascade) or its sign-up."""
    if login.kind == "user":
        _users.delete_user_txn(conn, login.user_id or 0)
    else:
        conn.execute(delete(legacy_pending).where(legacy_pending.c.name == login.name))
    conn.execute(
        delete(legacy_store_credentials).where(
            legacy_store_credentials.c.name == login.name,
            legacy_store_credentials.c.user_id.is_(None),
        )
    )


def add_credentials_txn(conn: Connection, key_id: str, secret: bytes, name: str, *, now_ms: int) -> None:
    """Record new unbound credentials for ``name``, keeping the newest few per name.

    Alike for every name, taken or free, so StoreEnable tells nobody which accounts exist:
    unbound credentials open nothing until the account proves its password and names them.
    """
    unbound = [
        row[0]
        for row in conn.execute(
            select(legacy_store_credentials.c.key_id)
            .where(
                legacy_store_credentials.c.name == name,
                legacy_store_credentials.c.user_id.is_(None),
            )
            .order_by(legacy_store_credentials.c.created_ms.desc())
        )
    ]
    stale = unbound[MAX_UNBOUND_CREDENTIALS - 1 :]
    if stale:
        conn.execute(delete(legacy_store_credentials).where(legacy_store_credentials.c.key_id.in_(stale)))
    conn.execute(
        insert(legacy_store_credentials).values(
            key_id=key_id, secret=secret, name=name, user_id=None, created_ms=now_ms
        )
    )


def get_credentials_txn(conn: Connection, key_id: str) -> StoreCredentials | None:
    """The credentials with this key id, or None."""
    row = (
        conn.execute(select(legacy_store_credentials).where(legacy_store_credentials.c.key_id == key_id))
        .mappings()
        .first()
    )
    if row is None:
        return None
    return StoreCredentials(row["key_id"], bytes(row["secret"]), row["name"], row["user_id"])


def add_captcha_token_txn(conn: Connection, token_hash: bytes, *, now_ms: int, expires_ms: int) -> None:
    """Record an operator-issued captcha token (by its hash)."""
    conn.execute(insert(legacy_captcha_tokens).values(token_hash=token_hash, created_ms=now_ms, expires_ms=expires_ms))


def use_captcha_token_txn(
    conn: Connection, token_hash: bytes, purpose: Literal["signup", "store"], *, now_ms: int
) -> bool:
    """Spend the token once for ``purpose``; False if unknown, expired or already spent."""
    column = legacy_captcha_tokens.c.signup_used_ms if purpose == "signup" else legacy_captcha_tokens.c.store_used_ms
    statement = (
        update(legacy_captcha_tokens)
        .where(
            legacy_captcha_tokens.c.token_hash == token_hash,
            legacy_captcha_tokens.c.expires_ms > now_ms,
            column.is_(None),
        )
        .values({column.name: now_ms})
    )
    return conn.execute(statement).rowcount > 0


def upgrade_account_txn(
    conn: Connection,
    user_id: int,
    *,
    srp_salt: bytes,
    srp_verifier: bytes,
    srp_group: str,
    key_block: bytes | None,
) -> None:
    """Move a legacy account to another SRP group; legacy logins and its MV store keys end here."""
    if srp_group == LEGACY_SRP_GROUP:
        raise InvalidInput("the upgrade must leave the legacy group")
    _users.change_auth_txn(
        conn,
        user_id,
        srp_salt=srp_salt,
        srp_verifier=srp_verifier,
        srp_group=srp_group,
        key_block=key_block,
    )
