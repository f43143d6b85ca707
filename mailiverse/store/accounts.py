"""Account-side tables: login sessions, one-time sign-up invites, shared server secrets, and the sign-up transaction.

Synchronous repository functions on a Connection, run through the ``Database`` door; they return
plain dataclasses. Session rows and invite rows hold only SHA-256 digests of their secrets.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import delete, func, insert, or_, select, text, update
from sqlalchemy.engine import Connection, RowMapping
from sqlalchemy.exc import IntegrityError

from mailiverse.store.errors import InvalidInput, StoreError, UserExists
from mailiverse.store.schema import invites, server_secrets, sessions, users
from mailiverse.store.users import User, add_user_txn, update_user_auth_txn

#: Bytes of randomness in an invite code.
INVITE_BYTES = 16
#: Longest invite code text accepted before hashing.
MAX_INVITE_LENGTH = 64
#: The PostgreSQL advisory lock that serialises sign-ups (so "first account" is decided once).
_SIGNUP_LOCK = 0x6D76_5349_474E


class SignupClosed(StoreError):
    """Sign-up needs an invite (or ``--open-signup``) and none was given, or it was not valid."""


@dataclass(frozen=True)
class SessionRow:
    """One stored session: the token's digest, never the token."""

    token_hash: bytes
    session_id: str
    username: str
    created_at: float
    last_seen: float


@dataclass(frozen=True)
class Invite:
    """One invite as stored; ``ref`` is a short public reference (a prefix of the code's digest)."""

    ref: str
    created_ms: int
    expires_ms: int | None
    used_ms: int | None
    used_by: str | None


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


# -- server secrets ---------------------------------------------------------------------------


def ensure_secret_txn(conn: Connection, name: str, nbytes: int = 32) -> bytes:
    """Return the secret ``name``, creating it with ``nbytes`` random bytes the first time.

    Every front end sharing the database gets the same value, so CSRF tokens and decoy salts
    agree between them.
    """
    existing = conn.execute(select(server_secrets.c.value).where(server_secrets.c.name == name)).scalar_one_or_none()
    if existing is not None:
        return bytes(existing)
    try:
        with conn.begin_nested():
            conn.execute(
                insert(server_secrets).values(name=name, value=secrets.token_bytes(nbytes), created_ms=_now_ms())
            )
    except IntegrityError:
        pass  # another front end created it first; read theirs
    return bytes(conn.execute(select(server_secrets.c.value).where(server_secrets.c.name == name)).scalar_one())


# -- sessions ---------------------------------------------------------------------------------


def _session(row: RowMapping) -> SessionRow:
    return SessionRow(
        token_hash=bytes(row["token_hash"]),
        session_id=row["session_id"],
        username=row["username"],
        created_at=float(row["created_at"]),
        last_seen=float(row["last_seen"]),
    )


def add_session_txn(conn: Connection, row: SessionRow) -> None:
    """Store a new session row."""
    conn.execute(
        insert(sessions).values(
            token_hash=row.token_hash,
            session_id=row.session_id,
            username=row.username,
            created_at=row.created_at,
            last_seen=row.last_seen,
        )
    )


def get_session_txn(conn: Connection, token_hash: bytes) -> SessionRow | None:
    """The session with this token digest, or None."""
    row = conn.execute(select(sessions).where(sessions.c.token_hash == token_hash)).mappings().first()
    return None if row is None else _session(row)


def touch_session_txn(conn: Connection, token_hash: bytes, last_seen: float) -> None:
    """Record that the session was used at ``last_seen``."""
    conn.execute(update(sessions).where(sessions.c.token_hash == token_hash).values(last_seen=last_seen))


def remove_session_txn(conn: Connection, token_hash: bytes) -> bool:
    """Delete one session; True if it existed."""
    return conn.execute(delete(sessions).where(sessions.c.token_hash == token_hash)).rowcount > 0


def remove_user_sessions_txn(conn: Connection, username: str) -> int:
    """Delete every session of ``username``; how many."""
    return int(conn.execute(delete(sessions).where(sessions.c.username == username)).rowcount)


def remove_expired_sessions_txn(conn: Connection, idle_before: float, created_before: float) -> int:
    """Delete sessions idle since before ``idle_before`` or created before ``created_before``."""
    statement = delete(sessions).where(or_(sessions.c.last_seen < idle_before, sessions.c.created_at < created_before))
    return int(conn.execute(statement).rowcount)


# -- invites ----------------------------------------------------------------------------------


def invite_digest(code: str) -> bytes:
    """The stored form of an invite code: SHA-256 of its (stripped) ASCII text."""
    return hashlib.sha256(code.strip().encode("ascii")).digest()


def _invite(row: RowMapping) -> Invite:
    return Invite(
        ref=bytes(row["code_hash"])[:6].hex(),
        created_ms=row["created_ms"],
        expires_ms=row["expires_ms"],
        used_ms=row["used_ms"],
        used_by=row["used_by"],
    )


def new_invite_code() -> str:
    """A random invite code (128 bits, URL-safe base64) that never starts with ``-``.

    A leading dash would make ``--invite CODE`` read as an option on every command line.
    """
    while True:
        code = secrets.token_urlsafe(INVITE_BYTES)
        if not code.startswith("-"):
            return code


def create_invite_txn(
    conn: Connection, *, expires_ms: int | None = None, now_ms: int | None = None
) -> tuple[str, Invite]:
    """Create a one-time invite; return the code (shown once) and its stored record."""
    code = new_invite_code()
    now = _now_ms() if now_ms is None else now_ms
    row = (
        conn.execute(
            insert(invites)
            .values(
                code_hash=invite_digest(code),
                created_ms=now,
                expires_ms=expires_ms,
            )
            .returning(*invites.c)
        )
        .mappings()
        .one()
    )
    return code, _invite(row)


def list_invites_txn(conn: Connection) -> list[Invite]:
    """Every invite, oldest first."""
    statement = select(invites).order_by(invites.c.created_ms, invites.c.code_hash)
    return [_invite(row) for row in conn.execute(statement).mappings()]


def _well_formed_invite(code: object) -> bool:
    return isinstance(code, str) and 0 < len(code.strip()) <= MAX_INVITE_LENGTH and code.isascii()


def consume_invite_txn(conn: Connection, code: str, username: str, now_ms: int) -> bool:
    """Mark a valid, unused, unexpired invite as used by ``username``; False if there is none."""
    if not _well_formed_invite(code):
        return False
    statement = (
        update(invites)
        .where(
            invites.c.code_hash == invite_digest(code),
            invites.c.used_ms.is_(None),
            or_(invites.c.expires_ms.is_(None), invites.c.expires_ms > now_ms),
        )
        .values(used_ms=now_ms, used_by=username)
    )
    return conn.execute(statement).rowcount > 0


# -- sign-up ----------------------------------------------------------------------------------


def count_users_txn(conn: Connection) -> int:
    """How many accounts exist."""
    return int(conn.execute(select(func.count()).select_from(users)).scalar_one())


def signup_open_for_txn(conn: Connection, invite: str | None, open_signup: bool) -> bool:
    """Whether a sign-up would be admitted now (without consuming anything)."""
    if open_signup or count_users_txn(conn) == 0:
        return True
    return invite is not None and _well_formed_invite(invite)


def invitation_admits_txn(conn: Connection, name: str, invite: str | None, open_signup: bool, now_ms: int) -> bool:
    """Whether the sign-up policy would admit ``name`` with ``invite``, spending nothing.

    For the steps of a sign-up that come before the account is made (the legacy StoreEnable):
    true where anyone may sign up, or for an unexpired invite that is unused or was used by
    ``name`` itself.
    """
    if open_signup or count_users_txn(conn) == 0:
        return True
    if invite is None or not _well_formed_invite(invite):
        return False
    row = conn.execute(
        select(invites.c.used_by).where(
            invites.c.code_hash == invite_digest(invite),
            or_(invites.c.expires_ms.is_(None), invites.c.expires_ms > now_ms),
        )
    ).first()
    return row is not None and row[0] in (None, name.lower())


def admit_signup_txn(conn: Connection, name: str, *, invite: str | None, open_signup: bool, now_ms: int) -> None:
    """The one sign-up policy (the JSON API and the legacy protocol): admit or raise SignupClosed.

    Admitted: the first account of an empty appliance, any with ``open_signup``, otherwise only
    with a valid unused invite, which is used up here (for ``name``). It runs before any check of
    the name, so a refused stranger learns nothing about which names exist; the caller's
    transaction rolls the invite back if the sign-up then fails.
    """
    if conn.dialect.name == "postgresql":
        # Two concurrent first sign-ups must not both see an empty users table.
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SIGNUP_LOCK})
    first = count_users_txn(conn) == 0
    if not (first or open_signup):
        if invite is None or not consume_invite_txn(conn, invite, name.lower(), now_ms):
            raise SignupClosed("sign-up needs a valid invite code")
    elif invite is not None and not first:
        # An invite given on an open appliance is still used up, so it cannot be replayed later.
        consume_invite_txn(conn, invite, name.lower(), now_ms)


def create_account_txn(
    conn: Connection,
    name: str,
    *,
    public_key_der: bytes,
    envelope_format: str,
    srp_salt: bytes,
    srp_verifier: bytes,
    srp_group: str,
    key_block: bytes,
    invite: str | None,
    open_signup: bool,
    now_ms: int | None = None,
    kdf: str | None = None,
) -> User:
    """Create an account with its SRP data and key block, if sign-up admits it; all in one transaction.

    Admitted: the first account of an empty appliance, or with a valid unused invite (which is
    then used up), or any when ``open_signup``. Raises SignupClosed, UserExists, InvalidInput.
    """
    now = _now_ms() if now_ms is None else now_ms
    admit_signup_txn(conn, name, invite=invite, open_signup=open_signup, now_ms=now)
    if conn.execute(select(users.c.id).where(users.c.name == name.lower())).first() is not None:
        raise UserExists("that user name is taken")
    user = add_user_txn(conn, name, public_key_der, envelope_format, now_ms=now)
    if not isinstance(key_block, bytes) or not key_block:
        raise InvalidInput("key block is empty")
    return update_user_auth_txn(
        conn,
        user.id,
        srp_salt=srp_salt,
        srp_verifier=srp_verifier,
        srp_group=srp_group,
        key_block=key_block,
        kdf=kdf,
    )


__all__ = [
    "new_invite_code",
    "invitation_admits_txn",
    "admit_signup_txn",
    "INVITE_BYTES",
    "Invite",
    "SessionRow",
    "SignupClosed",
    "add_session_txn",
    "consume_invite_txn",
    "count_users_txn",
    "create_account_txn",
    "create_invite_txn",
    "ensure_secret_txn",
    "get_session_txn",
    "invite_digest",
    "list_invites_txn",
    "remove_expired_sessions_txn",
    "remove_session_txn",
    "remove_user_sessions_txn",
    "signup_open_for_txn",
    "touch_session_txn",
]
