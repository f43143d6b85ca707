"""End-to-end fixtures: one smarthost and one appliance on SQLite per module, and a fresh PostgreSQL database.

What they start is in tests/support/e2e.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.database import postgres_url  # noqa: F401 - a fixture
from tests.support.e2e import Device, Smarthost, start_appliance, start_smarthost

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def smarthost(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Smarthost]:
    """One smarthost for the module."""
    host = start_smarthost(tmp_path_factory.mktemp("smarthost"))
    try:
        yield host
    finally:
        host.stop()


@pytest.fixture(scope="module")
def device(tmp_path_factory: pytest.TempPathFactory, smarthost: Smarthost) -> Iterator[Device]:
    """One appliance on SQLite for the module, and an empty device directory for the CLI."""
    root = tmp_path_factory.mktemp("e2e")
    appliance = start_appliance(root, smarthost)
    home = root / "device"
    home.mkdir()
    try:
        yield Device(home, appliance)
    finally:
        appliance.stop()
