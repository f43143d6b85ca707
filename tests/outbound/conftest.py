"""Fixtures for outbound tests: a migrated, empty database per backend, an appliance data directory for the
queue key, and a real DNS server for direct delivery."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.database import database, database_url, postgres_session_url  # noqa: F401 - fixtures
from tests.support.dnsserver import dns_server  # noqa: F401 - a fixture


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """An appliance data directory with its keys folder."""
    root = tmp_path / "data"
    (root / "keys").mkdir(parents=True, mode=0o700)
    return root
