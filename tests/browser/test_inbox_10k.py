"""A 10,000-message inbox in Chromium (slow: LONG=1): a fresh device's cold sync, checked message by message
against the store through the encrypted index it writes, then a warm login from that index. Prints the figures;
the goals themselves are measured by bench/browser_sync.py."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.browser import new_page, signup
from tests.support.harness import Appliance
from tests.support.mailbox import account_client, check_index, logout, seed, timed_login, timed_warm_login

pytestmark = [pytest.mark.integration, pytest.mark.slow]

COUNT = 10_000


def test_ten_thousand_message_inbox_cold_and_warm(browser: Any, appliance: Appliance) -> None:
    """Every one of 10,000 messages is in the index with its subject, date and message key; a warm login shows the
    newest from the cache."""
    page = new_page(browser, appliance)
    signup(page, "bench")
    logout(page)
    seeded = seed(appliance, "bench", COUNT)
    page.context.close()
    page = new_page(browser, appliance)
    cold = timed_login(page, "bench", timeout=900.0)
    assert page.locator("#list .row").first.inner_text().count(f"Message number {COUNT - 1}") == 1
    assert 0 < page.locator("#list .row").count() < 200  # virtual scroll: only the visible rows exist
    check_index(account_client(appliance, "bench"), seeded)
    warm = timed_warm_login(page, "bench", f"Message number {COUNT - 1}")
    timing = page.evaluate("mailiverseTiming()")
    assert page.locator("body").get_attribute("data-cached") == str(COUNT)
    print(
        f"\n10k inbox: first page {cold['first_s']:.2f} s, synced {cold['synced_s']:.2f} s; warm login {warm:.2f} s "
        f"(cache to list {timing['warm']:.0f} ms)"
    )
    page.context.close()
