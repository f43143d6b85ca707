"""Fixtures for homes: a metabase and two homes, three real PostgreSQL databases on the test server."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

from mailiverse.testing_db import (
    create_postgres_database,
    drop_postgres_database,
    postgres_admin_url,
    require_postgres,
)

pytestmark = pytest.mark.postgres


@dataclass(frozen=True)
class HomeUrls:
    metabase: str
    homes: dict[str, str]

    def options(self) -> list[str]:
        """The ``twistd mailiverse`` (and ``mailiverse-admin``) options naming them."""
        args = ["--metabase", self.metabase]
        for name, url in self.homes.items():
            args += ["--home", f"{name}={url}"]
        return args


@pytest.fixture
def home_urls() -> Iterator[HomeUrls]:
    """Three fresh databases: ``mv_meta_*`` and the homes ``home1`` and ``home2``; dropped afterwards."""
    require_postgres()
    urls = HomeUrls(
        create_postgres_database("mv_meta"),
        {"home1": create_postgres_database("mv_home1"), "home2": create_postgres_database("mv_home2")},
    )
    try:
        yield urls
    finally:
        for url in (urls.metabase, *urls.homes.values()):
            drop_postgres_database(url)


def set_reachable(url: str, reachable: bool) -> None:
    """Stop (or start again) one home on the shared server: no new connections, and the open ones cut."""
    name = make_url(url).database
    admin = make_url(postgres_admin_url()).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(
            sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS {}").format(
                sql.Identifier(str(name)), sql.SQL("true" if reachable else "false")
            )
        )
        if not reachable:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
