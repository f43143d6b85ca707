"""The test databases: a migrated, empty ``Database`` on SQLite and on PostgreSQL, and throw-away PostgreSQL URLs.

The fixtures are imported by the conftest of each package that wants them (pytest registers a
fixture wherever a conftest holds it), for example::

    from tests.support.database import database, database_url, postgres_session_url  # noqa: F401 - fixtures

``database`` runs every test once per backend (``[sqlite]``, and ``[postgresql]`` marked
``postgres``). PostgreSQL is the server of ``mailiverse.testing_db``: skipped when unreachable,
failed when ``CI`` is set. One PostgreSQL database serves a package's whole session; every table of
the schema is emptied before each test, so any package's tests may use it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import text

from mailiverse.store.db import Database
from mailiverse.store.schema import metadata
from mailiverse.testing_db import create_postgres_database, drop_postgres_database, require_postgres, sqlite_url

#: Every table of the schema, emptied in one statement (CASCADE follows the foreign keys).
TRUNCATE_ALL = "TRUNCATE {} RESTART IDENTITY CASCADE".format(", ".join(t.name for t in metadata.sorted_tables))


@pytest.fixture(scope="session")
def postgres_session_url() -> Iterator[str]:
    """A PostgreSQL database for the session, with a linguistic (ICU) default collation; dropped afterwards."""
    require_postgres()
    url = create_postgres_database("mv_test", icu_locale="en-US")
    try:
        yield url
    finally:
        drop_postgres_database(url)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database URL for each backend (a SQLite file in a new temp dir; the session's PostgreSQL database)."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path_factory.mktemp("db"))
    url: str = request.getfixturevalue("postgres_session_url")
    return url


def empty_every_table(db: Database) -> None:
    """Remove every row of every table of the schema (PostgreSQL; a SQLite test database starts empty)."""
    with db.blocking_allowed():
        db.transact_sync(lambda conn: conn.execute(text(TRUNCATE_ALL)))


@pytest.fixture
def database(database_url: str) -> Iterator[Database]:
    """An open, migrated, empty Database on each backend."""
    db = Database.open(database_url)
    try:
        if db.dialect_name == "postgresql":
            empty_every_table(db)
        yield db
    finally:
        db.close()


@contextmanager
def fresh_postgres_database(prefix: str) -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database ``<prefix>_<random>``, dropped on leaving (skip or CI rule first)."""
    require_postgres()
    url = create_postgres_database(prefix)
    try:
        yield url
    finally:
        drop_postgres_database(url)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database of the test's own (for a real appliance's ``--db``), dropped afterwards."""
    with fresh_postgres_database("mv_fresh") as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a fresh database on each backend that several front ends will open."""
    if request.param == "sqlite":
        yield sqlite_url(tmp_path)
        return
    with fresh_postgres_database("mv_front") as url:
        yield url


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
