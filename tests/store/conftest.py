"""Fixtures for store tests: every repository test runs against SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import text

from mailiverse.store import Database, User
from mailiverse.store import users as users_repo
from mailiverse.testing_db import (
    create_postgres_database,
    drop_postgres_database,
    require_postgres,
    sqlite_url,
)
from tests.support.store_calls import StoreCalls

START_MS = 1_700_000_000_000


class TickingClock:
    """A deterministic millisecond clock that advances by one on every reading."""

    def __init__(self, start: int = START_MS) -> None:
        self.now = start

    def __call__(self) -> int:
        self.now += 1
        return self.now


@pytest.fixture(scope="session")
def postgres_session_url() -> Iterator[str]:
    """A fresh PostgreSQL database for the session, with a linguistic (ICU) default collation."""
    require_postgres()
    url = create_postgres_database("mv_test", icu_locale="en-US")
    try:
        yield url
    finally:
        drop_postgres_database(url)


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """A database URL for each backend (SQLite file in a new temp dir; the session PG database)."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path_factory.mktemp("db"))
    url: str = request.getfixturevalue("postgres_session_url")
    return url


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    """An open, migrated, empty Database."""
    db = Database.open(database_url)
    try:
        if db.dialect_name == "postgresql":
            with db.blocking_allowed():
                db.transact_sync(
                    lambda conn: conn.execute(
                        text(
                            "TRUNCATE users, objects, object_chunks RESTART IDENTITY CASCADE"
                        )
                    )
                )
        yield db
    finally:
        db.close()


@pytest.fixture
def clock() -> TickingClock:
    """The clock the StoreCalls fixture uses."""
    return TickingClock()


@pytest.fixture
def store(database: Database, clock: TickingClock) -> StoreCalls:
    """The async store calls over the database fixture."""
    return StoreCalls(database, clock=clock)


@pytest.fixture
def user(database: Database) -> User:
    """A user named alice."""
    with database.blocking_allowed():
        return database.transact_sync(
            users_repo.add_user, "alice", b"public-key-der", "v2"
        )
