"""Fixtures for the account tests: two front ends (two ``Database`` objects) over one SQLite file or PostgreSQL database."""

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


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a fresh database that several front ends will open (fails, not skips, under CI)."""
    if request.param == "sqlite":
        yield sqlite_url(tmp_path)
        return
    require_postgres()
    url = create_postgres_database("mv_front")
    try:
        yield url
    finally:
        drop_postgres_database(url)


@pytest.fixture
def two_fronts(shared_url: str) -> Iterator[tuple[Database, Database]]:
    """Two independently opened databases on one URL, as two front-end processes would hold."""
    first = Database.open(shared_url)
    second = Database.open(shared_url)
    try:
        yield first, second
    finally:
        second.close()
        first.close()
