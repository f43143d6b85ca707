"""Fixtures for outbound tests: a migrated, empty database per backend
and an appliance data directory for the queue key."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.database import database, database_url, postgres_session_url  # noqa: F401 - fixtures


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """An appliance data directory with its keys folder."""
    root = tmp_path / "data"
    (root / "keys").mkdir(parents=True, mode=0o700)
    return root
