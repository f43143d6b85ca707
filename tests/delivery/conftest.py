"""Fixtures for delivery tests: ``database`` on SQLite and PostgreSQL (a module may define its own)."""

from tests.support.database import database, database_url, postgres_session_url  # noqa: F401 - fixtures
