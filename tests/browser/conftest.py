"""Fixtures for the browser tests: Debian's Chromium under Playwright against a real ``twistd`` on 127.0.0.1.

The session's Chromium (``browser``) is in tests/conftest.py, shared with the appliance tests.

The helpers that drive a page are in tests/support/browser.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.browser import require_chromium
from tests.support.harness import Appliance

pytestmark = pytest.mark.integration


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
