"""Suite-wide rules: ``slow`` tests run only in ``make test-long`` (LONG=1); no hypothesis deadlines."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

# Timing is not what property tests prove: a loaded CI machine must not fail them.
settings.register_profile("mailiverse", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "mailiverse"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("LONG"):
        return
    skip = pytest.mark.skip(reason="long test: run with make test-long")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
