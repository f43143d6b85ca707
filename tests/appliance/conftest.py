"""Fixtures of the appliance tests: Debian's Chromium under Playwright,
to see an installed appliance's client render (in the session's ``browser``, tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

#: ``check(url, domain)``: the client at ``url`` rendered, with ``domain`` as the sign-up domain.
ClientCheck = Callable[[str, str], None]


@pytest.fixture
def client_renders(browser: Any) -> Iterator[ClientCheck]:
    """A check, in the session's headless Chromium, that the client at a URL loads without error and shows
    its log-in screen."""
    from playwright.sync_api import expect

    def check(url: str, domain: str) -> None:
        context = browser.new_context(ignore_https_errors=True)
        try:
            page = context.new_page()
            page.set_default_timeout(30_000)
            failures: list[str] = []
            page.on("response", lambda r: failures.append(f"{r.status} {r.url}") if r.status >= 400 else None)
            page.on("pageerror", lambda error: failures.append(str(error)))
            page.goto(url + "/")
            expect(page.locator("#login-form")).to_be_visible()
            # The sign-up tab works and names the domain only once main.js has run and asked the API.
            page.click("#tab-signup")
            expect(page.locator("#signup-form")).to_be_visible()
            expect(page.locator("#signup-domains")).to_have_text(f"Your address will be name@{domain}.")
            assert failures == []
        finally:
            context.close()

    yield check
