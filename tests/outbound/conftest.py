"""Fixtures for outbound tests: a database per backend, a queue key, and a real STARTTLS+AUTH smarthost on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from mailiverse.store import Database
from mailiverse.testing_db import (
    create_postgres_database,
    drop_postgres_database,
    require_postgres,
    sqlite_url,
)


@pytest.fixture(scope="session")
def outbound_pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for the outbound tests of this session."""
    require_postgres()
    url = create_postgres_database("mv_outbound")
    try:
        yield url
    finally:
        drop_postgres_database(url)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database URL for each backend."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path_factory.mktemp("db"))
    url: str = request.getfixturevalue("outbound_pg_url")
    return url


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    """An open, migrated database with an empty outbound queue."""
    db = Database.open(database_url)
    try:
        if db.dialect_name == "postgresql":
            with db.blocking_allowed():
                db.transact_sync(
                    lambda conn: conn.execute(
                        text("TRUNCATE outbound_recipients, outbound_messages RESTART IDENTITY CASCADE")
                    )
                )
        yield db
    finally:
        db.close()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """An appliance data directory with its keys folder."""
    root = tmp_path / "data"
    (root / "keys").mkdir(parents=True, mode=0o700)
    return root
