"""Fixtures of the appliance tests: Debian's Chromium under Playwright,
to see an installed appliance's client render."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip

#: ``check(url, domain)``: the client at ``url`` rendered, with ``domain`` as the sign-up domain.
ClientCheck = Callable[[str, str], None]


@pytest.fixture
def client_renders() -> Iterator[ClientCheck]:
    """A check, in headless Chromium, that the client at a URL loads without error and shows its log-in screen."""
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail("/usr/bin/chromium is required in CI (Debian package chromium)")
        pytest.skip("/usr/bin/chromium is not installed (apt-get install chromium) and CI is not set")
    from playwright.sync_api import expect, sync_playwright

    # Function scope: the browser tests' own Playwright must not find this one still running.
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)

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

        try:
            yield check
        finally:
            browser.close()
