"""Fixtures for the web API tests: the app (``tests.support.webapi``) over the database on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mailiverse.store.db import Database
from mailiverse.testing_db import (
    create_postgres_database,
    drop_postgres_database,
    require_postgres,
    sqlite_url,
)
from tests.support.database import empty_every_table
from tests.support.webapi import Api, make_api


@pytest.fixture(scope="session")
def postgres_session_url() -> Iterator[str]:
    """A PostgreSQL database for the web tests of this session."""
    require_postgres()
    url = create_postgres_database("mv_web")
    try:
        yield url
    finally:
        drop_postgres_database(url)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    """An open, migrated, empty database on each backend."""
    if request.param == "sqlite":
        url = sqlite_url(tmp_path_factory.mktemp("webdb"))
    else:
        url = request.getfixturevalue("postgres_session_url")
    db = Database.open(url)
    try:
        if db.dialect_name == "postgresql":
            empty_every_table(db)
        yield db
    finally:
        db.close()


@pytest.fixture
def api(database: Database, tmp_path: Path) -> Iterator[Api]:
    """The app (closed sign-up) over the database fixture."""
    built, delivery = make_api(database, tmp_path)
    try:
        yield built
    finally:
        delivery.stop()


@pytest.fixture
def open_api(database: Database, tmp_path: Path) -> Iterator[Api]:
    """The app with ``--open-signup`` and no outbound queue."""
    built, delivery = make_api(database, tmp_path, open_signup=True, with_outbound=False)
    try:
        yield built
    finally:
        delivery.stop()
