"""Fixtures for the account tests: the database on each backend,
and two front ends (two ``Database`` objects) over one."""

from __future__ import annotations

from tests.support.database import (  # noqa: F401 - fixtures
    database,
    database_url,
    postgres_session_url,
    shared_url,
    two_fronts,
)
