"""Fixtures that run the real appliance as a subprocess, and a fresh PostgreSQL database for its ``--db``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.database import postgres_url  # noqa: F401 - a fixture
from tests.support.harness import Appliance

pytestmark = pytest.mark.integration


@pytest.fixture
def appliance(tmp_path: Path) -> Iterator[Appliance]:
    """A running appliance on SQLite in a fresh data dir."""
    app = Appliance(tmp_path / "appliance")
    app.start()
    try:
        yield app
    finally:
        app.stop()
