"""Fixtures for the browser tests: Debian's Chromium under Playwright against a real ``twistd`` on 127.0.0.1.

The helpers that drive a page are in tests/support/browser.py.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, require_chromium
from tests.support.harness import Appliance

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Debian Chromium for the whole run."""
    require_chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip("playwright is not installed in this environment")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def appliance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:
    """A running appliance with open sign-up, shared by the tests of one module."""
    require_chromium()
    app = Appliance(tmp_path_factory.mktemp("browser") / "appliance", extra_args=["--open-signup"])
    app.start()
    try:
        yield app
    finally:
        app.stop()
