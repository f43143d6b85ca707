"""``service_leases``: work that one front end of a metabase does at a time (certificate renewal).

A lease is a row naming its ``owner`` and the time it lapses. Taking one is a single upsert that
succeeds only when the row is absent, lapsed or already the taker's, so of many front ends racing
for it exactly one wins; a holder that dies simply lets it lapse, and another takes it over.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from mailiverse.store.errors import InvalidInput
from mailiverse.store.schema import service_leases

MAX_NAME = 64
MAX_OWNER = 200


def _check(name: str, owner: str) -> None:
    if not 0 < len(name) <= MAX_NAME or not 0 < len(owner) <= MAX_OWNER:
        raise InvalidInput("a lease needs a name of 1 to 64 and an owner of 1 to 200 characters")


def _upsert(dialect: str) -> Any:
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert(service_leases)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(service_leases)


def take_lease_txn(conn: Connection, name: str, owner: str, *, now_ms: int, until_ms: int) -> bool:
    """Hold ``name`` for ``owner`` until ``until_ms`` if nobody else holds it at ``now_ms``; say whether it is ours."""
    _check(name, owner)
    statement = _upsert(conn.dialect.name).values(name=name, owner=owner, until_ms=until_ms)
    statement = statement.on_conflict_do_update(
        index_elements=["name"],
        set_={"owner": owner, "until_ms": until_ms},
        where=(service_leases.c.until_ms <= now_ms) | (service_leases.c.owner == owner),
    ).returning(service_leases.c.owner)
    return conn.execute(statement).scalar_one_or_none() == owner


def extend_lease_txn(conn: Connection, name: str, owner: str, *, now_ms: int, until_ms: int) -> bool:
    """Move ``owner``'s lease on ``name`` to ``until_ms``; False if it lapsed (or was never theirs)."""
    _check(name, owner)
    statement = (
        update(service_leases)
        .where(service_leases.c.name == name, service_leases.c.owner == owner, service_leases.c.until_ms > now_ms)
        .values(until_ms=until_ms)
    )
    return bool(conn.execute(statement).rowcount)


def release_lease_txn(conn: Connection, name: str, owner: str, *, until_ms: int = 0) -> bool:
    """Let ``owner``'s lease on ``name`` lapse at ``until_ms`` (0: now); False if it was not theirs."""
    _check(name, owner)
    statement = (
        update(service_leases)
        .where(service_leases.c.name == name, service_leases.c.owner == owner)
        .values(until_ms=until_ms)
    )
    return bool(conn.execute(statement).rowcount)


def lease_holder_txn(conn: Connection, name: str, *, now_ms: int) -> str | None:
    """Who holds ``name`` at ``now_ms``, or None."""
    row = conn.execute(
        select(service_leases.c.owner).where(service_leases.c.name == name, service_leases.c.until_ms > now_ms)
    ).one_or_none()
    return None if row is None else str(row.owner)


__all__ = ["extend_lease_txn", "lease_holder_txn", "release_lease_txn", "take_lease_txn"]
