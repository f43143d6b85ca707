"""The main screens at desktop and phone width: layout, accessible names, and the screenshots in docs/.

Set ``MV_SCREENSHOTS=docs/screenshots`` to refresh the committed pictures; otherwise they go to a temp dir."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.support.browser import check_mail, html_mail, new_page, row, signup, smtp_send, text_mail
from tests.support.harness import DOMAIN, Appliance

pytestmark = pytest.mark.integration


def _shot(page: Any, folder: Path, name: str) -> None:
    path = folder / f"{name}.png"
    page.screenshot(path=str(path))
    assert path.stat().st_size > 5000


def test_screens_and_phone_layout(browser: Any, appliance: Appliance, tmp_path: Path) -> None:
    """Sign-up, inbox, reading and compose render; at phone width the list and the message take turns."""
    folder = Path(os.environ.get("MV_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    page = new_page(browser, appliance, viewport={"width": 1280, "height": 800})
    page.click("#tab-signup")
    page.fill("#signup-user", "dana")
    _shot(page, folder, "signup")
    page.click("#tab-login")
    signup(page, "dana")
    smtp_send(
        appliance, f"dana@{DOMAIN}", text_mail("dana", "Welcome to mailiverse", "Your mail is encrypted on arrival.")
    )
    smtp_send(
        appliance,
        f"dana@{DOMAIN}",
        html_mail(
            "Weekly newsletter",
            '<h1 style="color:#2456a6">This week</h1><p>Remote pictures stay blocked:</p>'
            '<img src="https://images.example/banner.png" alt="banner"><p>until you allow them.</p>',
        ),
    )
    smtp_send(
        appliance,
        f"dana@{DOMAIN}",
        text_mail("dana", "Lunch on Friday?", "Noon at the usual place?", sender="Erin <erin@remote.test>"),
    )
    check_mail(page)
    assert page.get_by_role("listbox", name="Inbox").count() == 1
    assert page.get_by_role("option", name="Unread. Erin. Lunch on Friday?", exact=False).count() == 1
    assert page.get_by_label("Search mail").count() == 1
    _shot(page, folder, "inbox")
    row(page, "Weekly newsletter").click()
    page.frame_locator("#reader iframe.mail-frame").locator("h1").wait_for()
    _shot(page, folder, "reading")
    page.keyboard.press("a")
    page.wait_for_selector("#compose[open]")
    assert page.input_value("#compose-subject") == "Re: Weekly newsletter"
    page.fill("#compose-cc", f"someone@{DOMAIN}")
    _shot(page, folder, "compose")
    page.click("#discard-button")

    phone = new_page(browser, appliance, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    phone.fill("#login-user", "dana")
    phone.fill("#login-password", "correct horse battery")
    phone.click("#login-form button[type=submit]")
    phone.wait_for_selector("#app:not([hidden])")
    row(phone, "Lunch on Friday?").wait_for()
    assert not phone.locator("#folders").is_visible()
    _shot(phone, folder, "phone-inbox")
    row(phone, "Lunch on Friday?").click()
    phone.wait_for_selector("#reader pre.text")
    assert not phone.locator(".list-pane").is_visible()
    _shot(phone, folder, "phone-reading")
    phone.get_by_role("button", name="Back to the list").click()
    assert phone.locator(".list-pane").is_visible()
    phone.get_by_role("button", name="Folders").click()
    assert phone.locator("#folders").is_visible()
    phone.context.close()
    page.context.close()
