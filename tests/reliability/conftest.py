"""Fixtures of the reliability suite: a fresh PostgreSQL database for a real appliance's ``--db``."""

from __future__ import annotations

from tests.support.database import postgres_url  # noqa: F401 - a fixture
