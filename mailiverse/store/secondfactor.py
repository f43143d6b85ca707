"""The second factor's tables (revision 0012): passkeys, recovery codes, and WebAuthn ceremonies under way.

Synchronous repository functions on a Connection, run through the ``Database`` door of the metabase (these are
account-level rows, beside ``sessions`` and ``pending_logins``). Recovery codes arrive here already as keyed
hashes and handles as SHA-256 digests (``mailiverse.accounts.secondfactor``); this module never sees either secret.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy.engine import Connection, RowMapping
from sqlalchemy.exc import IntegrityError

from mailiverse.store.errors import InvalidInput
from mailiverse.store.pending import purge_expired_pending_txn
from mailiverse.store.schema import passkey_credentials, pending_second_factors, recovery_codes

#: WebAuthn allows credential ids of up to 1023 bytes.
MAX_CREDENTIAL_ID_BYTES = 1023
#: A COSE public key (EC2 P-256, Ed25519 or RSA up to 4096 bits) is far below this.
MAX_PUBLIC_KEY_BYTES = 2048
MAX_NAME_LENGTH = 64
#: Most passkeys one account may register.
MAX_PASSKEYS = 20
#: Length of a handle digest and of a recovery code's keyed hash (SHA-256 both).
DIGEST_BYTES = 32
MAX_CHALLENGE_BYTES = 64
MAX_STATE_LENGTH = 512
#: What a pending ceremony is for.
LOGIN, REGISTER = "login", "register"
#: Most ceremonies under way for one account (older ones are dropped first).
MAX_PENDING_PER_USER = 10


class PasskeyExists(InvalidInput):
    """The credential is registered already (to this account or another)."""


class TooManyPasskeys(InvalidInput):
    """The account has ``MAX_PASSKEYS`` passkeys; one must be removed first."""


@dataclass(frozen=True)
class Passkey:
    """One registered WebAuthn credential of an account."""

    id: int
    user_id: int
    credential_id: bytes
    public_key: bytes
    sign_count: int
    name: str
    transports: tuple[str, ...]
    created_ms: int
    last_used_ms: int | None

    def __repr__(self) -> str:
        return f"Passkey(id={self.id}, user_id={self.user_id}, name={self.name!r})"


@dataclass(frozen=True)
class RecoveryCodeState:
    """How many of an account's recovery codes are left, of how many, made when."""

    remaining: int
    total: int
    created_ms: int | None


@dataclass(frozen=True)
class PendingCeremony:
    """A ceremony taken from ``pending_second_factors`` (the row is gone once this is returned)."""

    user_id: int
    purpose: str
    challenge: bytes
    expires_ms: int
    #: What the ceremony carries to its end (JSON text: a login's device id and rate-limit keys).
    state: str


def _check_digest(value: bytes, what: str) -> None:
    if not isinstance(value, bytes) or len(value) != DIGEST_BYTES:
        raise InvalidInput(f"{what} is {DIGEST_BYTES} bytes")


def _transports(text: str | None) -> tuple[str, ...]:
    try:
        listed = json.loads(text or "[]")
    except ValueError:
        return ()
    return tuple(item for item in listed if isinstance(item, str)) if isinstance(listed, list) else ()


def _passkey(row: RowMapping) -> Passkey:
    return Passkey(
        id=int(row["id"]),
        user_id=int(row["user_id"]),
        credential_id=bytes(row["credential_id"]),
        public_key=bytes(row["public_key"]),
        sign_count=int(row["sign_count"]),
        name=str(row["name"]),
        transports=_transports(row["transports"]),
        created_ms=int(row["created_ms"]),
        last_used_ms=None if row["last_used_ms"] is None else int(row["last_used_ms"]),
    )


# -- passkeys ---------------------------------------------------------------------------------------------


def list_passkeys_txn(conn: Connection, user_id: int) -> list[Passkey]:
    """The account's passkeys, oldest first."""
    rows = conn.execute(
        select(passkey_credentials)
        .where(passkey_credentials.c.user_id == user_id)
        .order_by(passkey_credentials.c.created_ms, passkey_credentials.c.id)
    ).mappings()
    return [_passkey(row) for row in rows]


def count_passkeys_txn(conn: Connection, user_id: int) -> int:
    """How many passkeys the account has (0: no second factor)."""
    return int(
        conn.execute(
            select(func.count()).select_from(passkey_credentials).where(passkey_credentials.c.user_id == user_id)
        ).scalar_one()
    )


def find_passkey_txn(conn: Connection, user_id: int, credential_id: bytes) -> Passkey | None:
    """The account's passkey with this credential id, or None (another account's is None too)."""
    if not isinstance(credential_id, bytes) or not 0 < len(credential_id) <= MAX_CREDENTIAL_ID_BYTES:
        return None
    row = (
        conn.execute(
            select(passkey_credentials).where(
                and_(passkey_credentials.c.user_id == user_id, passkey_credentials.c.credential_id == credential_id)
            )
        )
        .mappings()
        .first()
    )
    return None if row is None else _passkey(row)


def add_passkey_txn(
    conn: Connection,
    user_id: int,
    *,
    credential_id: bytes,
    public_key: bytes,
    sign_count: int,
    name: str,
    transports: Sequence[str],
    now_ms: int,
    max_passkeys: int = MAX_PASSKEYS,
) -> Passkey:
    """Register a passkey; ``PasskeyExists`` if its credential id is known, ``TooManyPasskeys`` at the limit."""
    if not isinstance(credential_id, bytes) or not 0 < len(credential_id) <= MAX_CREDENTIAL_ID_BYTES:
        raise InvalidInput(f"a credential id is 1 to {MAX_CREDENTIAL_ID_BYTES} bytes")
    if not isinstance(public_key, bytes) or not 0 < len(public_key) <= MAX_PUBLIC_KEY_BYTES:
        raise InvalidInput(f"a credential public key is 1 to {MAX_PUBLIC_KEY_BYTES} bytes")
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME_LENGTH:
        raise InvalidInput(f"a passkey's name is 1 to {MAX_NAME_LENGTH} characters")
    if not 0 <= sign_count < 2**32:
        raise InvalidInput("a signature counter is a 32-bit number")
    if count_passkeys_txn(conn, user_id) >= max_passkeys:
        raise TooManyPasskeys(f"an account has at most {max_passkeys} passkeys; remove one first")
    try:
        with conn.begin_nested():
            inserted = conn.execute(
                insert(passkey_credentials)
                .values(
                    user_id=user_id,
                    credential_id=credential_id,
                    public_key=public_key,
                    sign_count=sign_count,
                    name=name,
                    transports=json.dumps([t for t in transports if isinstance(t, str)][:8]),
                    created_ms=now_ms,
                    last_used_ms=None,
                )
                .returning(passkey_credentials.c.id)
            ).scalar_one()
    except IntegrityError:
        raise PasskeyExists("this passkey is registered already") from None
    found = conn.execute(select(passkey_credentials).where(passkey_credentials.c.id == inserted)).mappings().one()
    return _passkey(found)


def use_passkey_txn(conn: Connection, passkey_id: int, old_count: int, new_count: int, now_ms: int) -> bool:
    """Record a login with the passkey: its new signature counter and the time. False if another login used the
    passkey meanwhile (the counter moved since it was read), so a cloned authenticator racing the real one loses."""
    result = conn.execute(
        update(passkey_credentials)
        .where(and_(passkey_credentials.c.id == passkey_id, passkey_credentials.c.sign_count == old_count))
        .values(sign_count=new_count, last_used_ms=now_ms)
    )
    return int(result.rowcount) == 1


def delete_passkey_txn(conn: Connection, user_id: int, credential_id: bytes) -> bool:
    """Remove the account's passkey; with its last one go its recovery codes (the second factor is off)."""
    removed = int(
        conn.execute(
            delete(passkey_credentials).where(
                and_(passkey_credentials.c.user_id == user_id, passkey_credentials.c.credential_id == credential_id)
            )
        ).rowcount
    )
    if removed and count_passkeys_txn(conn, user_id) == 0:
        conn.execute(delete(recovery_codes).where(recovery_codes.c.user_id == user_id))
    return removed == 1


# -- recovery codes ---------------------------------------------------------------------------------------


def set_recovery_codes_txn(conn: Connection, user_id: int, code_hashes: Sequence[bytes], now_ms: int) -> None:
    """Replace the account's recovery codes (used or not) with these keyed hashes."""
    for code_hash in code_hashes:
        _check_digest(code_hash, "a recovery code's keyed hash")
    if len(set(code_hashes)) != len(code_hashes):
        raise InvalidInput("recovery codes must differ")
    conn.execute(delete(recovery_codes).where(recovery_codes.c.user_id == user_id))
    if code_hashes:
        conn.execute(
            insert(recovery_codes),
            [{"user_id": user_id, "code_hash": h, "created_ms": now_ms, "used_ms": None} for h in code_hashes],
        )


def unused_recovery_codes_txn(conn: Connection, user_id: int) -> list[bytes]:
    """The keyed hashes of the account's unused recovery codes."""
    rows = conn.execute(
        select(recovery_codes.c.code_hash).where(
            and_(recovery_codes.c.user_id == user_id, recovery_codes.c.used_ms.is_(None))
        )
    )
    return [bytes(row[0]) for row in rows]


def spend_recovery_code_txn(conn: Connection, user_id: int, code_hash: bytes, now_ms: int) -> bool:
    """Mark one unused recovery code used; False if it is not the account's or was used (by a racing login too)."""
    _check_digest(code_hash, "a recovery code's keyed hash")
    result = conn.execute(
        update(recovery_codes)
        .where(
            and_(
                recovery_codes.c.user_id == user_id,
                recovery_codes.c.code_hash == code_hash,
                recovery_codes.c.used_ms.is_(None),
            )
        )
        .values(used_ms=now_ms)
    )
    return int(result.rowcount) == 1


def recovery_code_state_txn(conn: Connection, user_id: int) -> RecoveryCodeState:
    """How many recovery codes the account has left, of how many, made when."""
    total, remaining, created = conn.execute(
        select(
            func.count(),
            func.count().filter(recovery_codes.c.used_ms.is_(None)),
            func.max(recovery_codes.c.created_ms),
        ).where(recovery_codes.c.user_id == user_id)
    ).one()
    return RecoveryCodeState(int(remaining or 0), int(total or 0), None if created is None else int(created))


# -- ceremonies under way -------------------------------------------------------------------------------------


def add_pending_txn(
    conn: Connection,
    handle_hash: bytes,
    *,
    user_id: int,
    purpose: str,
    challenge: bytes,
    expires_ms: int,
    now_ms: int,
    state: str = "{}",
    max_entries: int = 10_000,
) -> None:
    """Keep one ceremony; first drop expired ones, the account's oldest past ``MAX_PENDING_PER_USER``, and the
    oldest of all at ``max_entries``."""
    _check_digest(handle_hash, "a handle digest")
    if purpose not in (LOGIN, REGISTER):
        raise InvalidInput("a ceremony is for 'login' or 'register'")
    if not isinstance(challenge, bytes) or not 16 <= len(challenge) <= MAX_CHALLENGE_BYTES:
        raise InvalidInput(f"a WebAuthn challenge is 16 to {MAX_CHALLENGE_BYTES} bytes")
    if len(state) > MAX_STATE_LENGTH:
        raise InvalidInput("a ceremony's state is too long")
    purge_expired_pending_txn(conn, now_ms)
    table = pending_second_factors
    mine = (
        select(table.c.handle_hash)
        .where(table.c.user_id == user_id)
        .order_by(table.c.expires_ms.desc(), table.c.handle_hash)
        .offset(MAX_PENDING_PER_USER - 1)
    )
    conn.execute(delete(table).where(table.c.handle_hash.in_(mine.scalar_subquery())))
    excess = int(conn.execute(select(func.count()).select_from(table)).scalar_one()) - max_entries + 1
    if excess > 0:
        oldest = select(table.c.handle_hash).order_by(table.c.expires_ms, table.c.handle_hash).limit(excess)
        conn.execute(delete(table).where(table.c.handle_hash.in_(oldest.scalar_subquery())))
    conn.execute(
        insert(table).values(
            handle_hash=handle_hash,
            user_id=user_id,
            purpose=purpose,
            challenge=challenge,
            expires_ms=expires_ms,
            state=state,
        )
    )


def take_pending_txn(conn: Connection, handle_hash: bytes) -> PendingCeremony | None:
    """Delete the ceremony of ``handle_hash`` and return it (one ``DELETE ... RETURNING``: of two requests racing
    for a handle, one gets it); None if there is none. Expiry is the caller's to check."""
    _check_digest(handle_hash, "a handle digest")
    table = pending_second_factors
    row = (
        conn.execute(
            delete(table)
            .where(table.c.handle_hash == handle_hash)
            .returning(table.c.user_id, table.c.purpose, table.c.challenge, table.c.expires_ms, table.c.state)
        )
        .mappings()
        .first()
    )
    if row is None:
        return None
    return PendingCeremony(
        user_id=int(row["user_id"]),
        purpose=str(row["purpose"]),
        challenge=bytes(row["challenge"]),
        expires_ms=int(row["expires_ms"]),
        state=str(row["state"]),
    )


def count_pending_txn(conn: Connection) -> int:
    """How many ceremonies are stored (expired ones included until purged)."""
    return int(conn.execute(select(func.count()).select_from(pending_second_factors)).scalar_one())


# -- the operator's reset -------------------------------------------------------------------------------------


def reset_second_factor_txn(conn: Connection, user_id: int) -> tuple[int, int]:
    """Remove the account's passkeys, recovery codes and ceremonies: it logs in with its password alone again.
    Returns (passkeys removed, recovery codes removed)."""
    passkeys = int(conn.execute(delete(passkey_credentials).where(passkey_credentials.c.user_id == user_id)).rowcount)
    codes = int(conn.execute(delete(recovery_codes).where(recovery_codes.c.user_id == user_id)).rowcount)
    conn.execute(delete(pending_second_factors).where(pending_second_factors.c.user_id == user_id))
    return passkeys, codes


__all__ = [
    "LOGIN",
    "MAX_CREDENTIAL_ID_BYTES",
    "MAX_NAME_LENGTH",
    "MAX_PASSKEYS",
    "REGISTER",
    "Passkey",
    "PasskeyExists",
    "PendingCeremony",
    "RecoveryCodeState",
    "TooManyPasskeys",
    "add_passkey_txn",
    "add_pending_txn",
    "count_passkeys_txn",
    "count_pending_txn",
    "delete_passkey_txn",
    "find_passkey_txn",
    "list_passkeys_txn",
    "purge_expired_pending_txn",
    "recovery_code_state_txn",
    "reset_second_factor_txn",
    "set_recovery_codes_txn",
    "spend_recovery_code_txn",
    "take_pending_txn",
    "unused_recovery_codes_txn",
    "use_passkey_txn",
]
