"""Test helpers for databases: fresh SQLite URLs, throw-away PostgreSQL databases, and the CI rule for PG tests.

Import from tests and fixtures only. PostgreSQL is the server at 127.0.0.1:5432, user ``postgres``
with trust authentication, unless ``MAILIVERSE_TEST_PG`` gives another admin URL.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
_CONNECT_TIMEOUT_S = 3


def sqlite_url(directory: Path | str, name: str = "mailiverse.sqlite3") -> str:
    """A ``sqlite:///`` URL for a new database file ``name`` in ``directory`` (e.g. pytest's tmp_path)."""
    return f"sqlite:///{Path(directory).resolve() / name}"


def postgres_admin_url() -> str:
    """The URL of the maintenance database used to create and drop test databases."""
    return os.environ.get("MAILIVERSE_TEST_PG", DEFAULT_ADMIN_URL)


def _libpq(url: str) -> str:
    parsed = make_url(url)
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


def postgres_unavailable_reason() -> str | None:
    """None if the test PostgreSQL server answers, else why not (without credentials)."""
    try:
        with psycopg.connect(_libpq(postgres_admin_url()), connect_timeout=_CONNECT_TIMEOUT_S) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as error:
        return f"PostgreSQL at {make_url(postgres_admin_url()).host} is unreachable ({type(error).__name__})"
    return None


def require_postgres() -> None:
    """Skip the calling test when PostgreSQL is unreachable, but fail it when ``CI`` is set."""
    import pytest

    reason = postgres_unavailable_reason()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI is set, so PostgreSQL tests may not be skipped")
    pytest.skip(reason)


def create_postgres_database(prefix: str = "mv_test", *, icu_locale: str | None = None) -> str:
    """Create an empty database ``<prefix>_<random>`` and return its ``postgresql+psycopg://`` URL.

    ``icu_locale`` (e.g. ``"en-US"``) gives the database a linguistic default collation, to prove
    code does not depend on byte-order collation; it falls back to the server default when ICU is missing.
    """
    if not prefix.isidentifier() or not prefix.isascii():
        raise ValueError("database name prefix must be an ASCII identifier")
    name = f"{prefix}_{secrets.token_hex(6)}"
    with psycopg.connect(
        _libpq(postgres_admin_url()),
        autocommit=True,
        connect_timeout=_CONNECT_TIMEOUT_S,
    ) as conn:
        created = False
        if icu_locale is not None:
            try:
                conn.execute(
                    sql.SQL(
                        "CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8' LOCALE_PROVIDER icu ICU_LOCALE {}"
                    ).format(sql.Identifier(name), sql.Literal(icu_locale))
                )
                created = True
            except psycopg.Error:
                created = False
        if not created:
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8'").format(sql.Identifier(name)))
    return (
        make_url(postgres_admin_url())
        .set(drivername="postgresql+psycopg", database=name)
        .render_as_string(hide_password=False)
    )


def drop_postgres_database(url: str) -> None:
    """Drop the database named in ``url``, disconnecting any session still using it."""
    name = make_url(url).database
    if not name:
        raise ValueError("the URL names no database")
    with psycopg.connect(
        _libpq(postgres_admin_url()),
        autocommit=True,
        connect_timeout=_CONNECT_TIMEOUT_S,
    ) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
