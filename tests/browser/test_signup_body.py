"""The web client's sign-up in a real Chromium fits the body cap of a request without a session.

A request without a credential that verifies may send 16 KiB of body (docs/api.md); the sign-up
carries the key block and the public key, so its real size, as the browser sends it, is measured here.
"""

from __future__ import annotations

from typing import Any

import pytest

from mailiverse.contracts import ANONYMOUS_BODY_BYTES
from tests.support.browser import new_page, signup
from tests.support.harness import Appliance

pytestmark = pytest.mark.integration


def test_browser_signup_fits_the_anonymous_cap(browser: Any, appliance: Appliance) -> None:
    """The POST /api/signup the browser sends is under half the anonymous cap, and the sign-up succeeds."""
    page = new_page(browser, appliance)
    sizes: list[int] = []

    def record(request: Any) -> None:
        if request.method == "POST" and request.url.endswith("/api/signup"):
            sizes.append(len(request.post_data_buffer or b""))

    page.on("request", record)
    signup(page, "measured-signup")
    assert len(sizes) == 1, sizes
    print(f"browser sign-up body: {sizes[0]} bytes (anonymous cap {ANONYMOUS_BODY_BYTES})")
    assert 0 < sizes[0] * 2 < ANONYMOUS_BODY_BYTES
