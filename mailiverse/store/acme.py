"""The ACME state front ends of a metabase share: HTTP-01 answers (``acme_challenges``) and the issued
certificate with its private key (``acme_certificates``), for every front end to serve and load.

The private key is stored in the clear, as in the data directory's ``--tls-key`` file; why that is
acceptable is in ``mailiverse.acme.shared``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.engine import Connection

from mailiverse.store.errors import InvalidInput
from mailiverse.store.schema import acme_certificates, acme_challenges

MAX_TOKEN = 128
MAX_KEY_AUTHORIZATION = 300
MAX_PEM = 64 * 1024


@dataclass(frozen=True)
class StoredCertificate:
    """A certificate chain and its key, as the front end that ordered it published them."""

    chain_pem: bytes
    key_pem: bytes
    updated_ms: int


def _upsert(table: Any, dialect: str) -> Any:
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)


# -- challenges --------------------------------------------------------------------------------


def purge_expired_challenges_txn(conn: Connection, now_ms: int) -> int:
    """Delete the answers that expired by ``now_ms``; return how many."""
    return int(conn.execute(delete(acme_challenges).where(acme_challenges.c.expires_ms <= now_ms)).rowcount)


def put_challenge_txn(
    conn: Connection, token: str, key_authorization: str, *, expires_ms: int, now_ms: int, max_pending: int
) -> None:
    """Serve ``key_authorization`` for ``token`` until ``expires_ms``; InvalidInput past ``max_pending`` answers."""
    if not 0 < len(token) <= MAX_TOKEN or not 0 < len(key_authorization) <= MAX_KEY_AUTHORIZATION:
        raise InvalidInput("an ACME token or key authorization has an impossible size")
    purge_expired_challenges_txn(conn, now_ms)
    pending = conn.execute(
        select(func.count()).select_from(acme_challenges).where(acme_challenges.c.token != token)
    ).scalar_one()
    if pending >= max_pending:
        raise InvalidInput("too many ACME challenges pending")
    statement = _upsert(acme_challenges, conn.dialect.name).values(
        token=token, key_authorization=key_authorization, expires_ms=expires_ms
    )
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=["token"], set_={"key_authorization": key_authorization, "expires_ms": expires_ms}
        )
    )


def delete_challenge_txn(conn: Connection, token: str) -> None:
    """Stop serving ``token``."""
    conn.execute(delete(acme_challenges).where(acme_challenges.c.token == token))


def challenge_txn(conn: Connection, token: str, *, now_ms: int) -> str | None:
    """The unexpired key authorization of ``token``, or None."""
    row = conn.execute(
        select(acme_challenges.c.key_authorization).where(
            acme_challenges.c.token == token, acme_challenges.c.expires_ms > now_ms
        )
    ).one_or_none()
    return None if row is None else str(row.key_authorization)


# -- certificates ------------------------------------------------------------------------------


def save_certificate_txn(conn: Connection, name: str, chain_pem: bytes, key_pem: bytes, *, now_ms: int) -> None:
    """Publish the chain and key of the certificate ``name`` (the primary host name), replacing the last ones."""
    if not 0 < len(chain_pem) <= MAX_PEM or not 0 < len(key_pem) <= MAX_PEM:
        raise InvalidInput("a certificate chain or key has an impossible size")
    statement = _upsert(acme_certificates, conn.dialect.name).values(
        name=name, chain_pem=chain_pem, key_pem=key_pem, updated_ms=now_ms
    )
    conn.execute(
        statement.on_conflict_do_update(
            index_elements=["name"], set_={"chain_pem": chain_pem, "key_pem": key_pem, "updated_ms": now_ms}
        )
    )


def certificate_txn(conn: Connection, name: str, *, newer_than_ms: int = -1) -> StoredCertificate | None:
    """The published certificate ``name`` if it was published after ``newer_than_ms``, else None."""
    row = conn.execute(
        select(acme_certificates.c.chain_pem, acme_certificates.c.key_pem, acme_certificates.c.updated_ms).where(
            acme_certificates.c.name == name, acme_certificates.c.updated_ms > newer_than_ms
        )
    ).one_or_none()
    if row is None:
        return None
    return StoredCertificate(bytes(row.chain_pem), bytes(row.key_pem), int(row.updated_ms))


__all__ = [
    "StoredCertificate",
    "certificate_txn",
    "challenge_txn",
    "delete_challenge_txn",
    "purge_expired_challenges_txn",
    "put_challenge_txn",
    "save_certificate_txn",
]
