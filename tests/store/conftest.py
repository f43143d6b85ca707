"""Fixtures for store tests: every repository test runs against SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from mailiverse.store import Database, User
from mailiverse.store import users as users_repo
from tests.support.database import database, database_url, postgres_session_url  # noqa: F401 - fixtures
from tests.support.store_calls import StoreCalls

START_MS = 1_700_000_000_000


class TickingClock:
    """A deterministic millisecond clock that advances by one on every reading."""

    def __init__(self, start: int = START_MS) -> None:
        self.now = start

    def __call__(self) -> int:
        self.now += 1
        return self.now


@pytest.fixture
def clock() -> TickingClock:
    """The clock the StoreCalls fixture uses."""
    return TickingClock()


@pytest.fixture
def store(database: Database, clock: TickingClock) -> StoreCalls:  # noqa: F811 - the fixture
    """The async store calls over the database fixture."""
    return StoreCalls(database, clock=clock)


@pytest.fixture
def user(database: Database) -> User:  # noqa: F811 - the fixture
    """A user named alice."""
    with database.blocking_allowed():
        return database.transact_sync(users_repo.add_user_txn, "alice", b"public-key-der", "v2")
