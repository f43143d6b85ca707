"""Suite-wide rules: ``slow`` tests run only in ``make test-long`` (LONG=1); no hypothesis deadlines; one
headless Chromium per test process (``browser``: Playwright's sync API cannot run twice in one thread)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, require_chromium

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


@pytest.fixture(scope="session")
def playwright() -> Iterator[Any]:
    """Playwright's sync API, started once per test process (it cannot run twice in one thread)."""
    require_chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip("playwright is not installed in this environment")
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(playwright: Any) -> Iterator[Any]:
    """One headless Debian Chromium for the whole run."""
    chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    try:
        yield chromium
    finally:
        chromium.close()
