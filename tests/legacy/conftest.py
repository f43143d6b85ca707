"""Fixtures for the legacy protocol: served over SQLite or PostgreSQL by tests/support/legacy.py,
with a recording outbound queue."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mailiverse.config import LegacyOptions
from mailiverse.testing_db import sqlite_url
from tests.support.database import fresh_postgres_database
from tests.support.legacy import DOMAIN, LegacyAppliance, RecordingOutbound, serve_legacy


@pytest.fixture
def outbound() -> RecordingOutbound:
    """Records remote submissions from Send."""
    return RecordingOutbound()


@pytest.fixture
def appliance(tmp_path: Path, outbound: RecordingOutbound) -> Iterator[LegacyAppliance]:
    """The legacy protocol on SQLite, captcha off, open sign-up, with a recording outbound queue."""
    options = LegacyOptions(enabled=True, domains=(DOMAIN,), hostname="mail." + DOMAIN)
    yield from serve_legacy(tmp_path, sqlite_url(tmp_path), options, outbound, open_signup=True)


@pytest.fixture
def token_appliance(tmp_path: Path) -> Iterator[LegacyAppliance]:
    """The legacy protocol with the ``token`` captcha policy and no outbound queue."""
    options = LegacyOptions(enabled=True, domains=(DOMAIN,), hostname="mail." + DOMAIN, captcha="token")
    yield from serve_legacy(tmp_path, sqlite_url(tmp_path), options)


@pytest.fixture
def pg_appliance(tmp_path: Path, outbound: RecordingOutbound) -> Iterator[LegacyAppliance]:
    """The legacy protocol on a throw-away PostgreSQL database."""
    with fresh_postgres_database("mv_legacy") as url:
        options = LegacyOptions(enabled=True, domains=(DOMAIN,), hostname="mail." + DOMAIN)
        yield from serve_legacy(tmp_path, url, options, outbound, open_signup=True)
