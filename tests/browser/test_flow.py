"""The whole client in a real Chromium: sign-up, SMTP arrival, reading, sending between users, reply,
search, delete/restore, logout and a warm login from the encrypted cache."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.browser import (
    PASSWORD,
    check_mail,
    login,
    new_page,
    row,
    signup,
    smtp_send,
    text_mail,
    wait_synced,
    wait_until,
)
from tests.support.harness import DOMAIN, Appliance

pytestmark = pytest.mark.integration


def _attachment_mail(to_user: str) -> Any:
    msg = text_mail(to_user, "Quarterly figures", "Hi Alice,\nthe numbers are attached. Codeword: zeppelin.\n")
    msg.add_attachment(bytes(range(256)) * 4, maintype="application", subtype="octet-stream", filename="figures.bin")
    return msg


def test_full_mail_flow(browser: Any, appliance: Appliance) -> None:
    """Two users sign up, read SMTP mail, write to each other, reply, search, delete, restore and log back in."""
    alice = new_page(browser, appliance)
    signup(alice, "alice")
    bob = new_page(browser, appliance)
    signup(bob, "Bob")
    assert bob.locator("#account-button").inner_text() == f"bob@{DOMAIN}"

    # Mail arrives over SMTP and is decrypted in the browser.
    smtp_send(appliance, f"alice@{DOMAIN}", _attachment_mail("alice"))
    check_mail(alice)
    arrived = row(alice, "Quarterly figures")
    assert arrived.count() == 1
    assert "unread" in (arrived.get_attribute("class") or "")
    assert "Robert Remote" in arrived.inner_text()
    assert alice.locator("#count-inbox").inner_text() == "1"

    # Reading: text, headers, read state, attachment download.
    arrived.click()
    alice.wait_for_selector("#reader-subject")
    assert alice.locator("#reader-subject").inner_text() == "Quarterly figures"
    assert "Codeword: zeppelin." in alice.locator("#reader pre.text").inner_text()
    assert "unread" not in (row(alice, "Quarterly figures").get_attribute("class") or "")
    assert alice.locator("#count-inbox").inner_text() == ""
    with alice.expect_download() as info:
        alice.click("text=figures.bin")
    download = info.value
    assert download.suggested_filename == "figures.bin"
    assert open(download.path(), "rb").read() == bytes(range(256)) * 4

    # Alice writes to Bob (to + bcc to herself); Bob reads it.
    alice.click("#compose-button")
    alice.fill("#compose-to", f"bob@{DOMAIN}")
    alice.fill("#compose-bcc", f"alice@{DOMAIN}")
    alice.fill("#compose-subject", "Lunch on Thursday?")
    alice.fill("#compose-text", "Shall we meet at noon? Ünïcode ✓")
    alice.click("#send-button")
    alice.wait_for_selector("#compose", state="hidden")
    wait_synced(alice, 3)
    check_mail(bob)
    bob_row = row(bob, "Lunch on Thursday?")
    assert bob_row.count() == 1 and "alice@" in bob_row.inner_text()
    bob_row.click()
    bob.wait_for_selector("#reader pre.text")
    assert "Shall we meet at noon? Ünïcode ✓" in bob.locator("#reader pre.text").inner_text()

    # Bob replies with the keyboard shortcut; Alice gets "Re:" with the quote.
    bob.locator("#list").focus()
    bob.keyboard.press("r")
    bob.wait_for_selector("#compose[open]")
    assert bob.input_value("#compose-to") == f"alice@{DOMAIN}"
    assert bob.input_value("#compose-subject") == "Re: Lunch on Thursday?"
    bob.locator("#compose-text").press("Control+Home")
    bob.locator("#compose-text").type("Noon works. ")
    bob.click("#send-button")
    bob.wait_for_selector("#compose", state="hidden")
    check_mail(alice)
    reply = row(alice, "Re: Lunch on Thursday?")
    assert reply.count() == 1
    reply.click()
    body = alice.locator("#reader pre.text").inner_text()
    assert body.startswith("Noon works.") and "> Shall we meet at noon?" in body

    # Sent folder holds Alice's message.
    alice.click("[data-folder=sent]")
    assert row(alice, "Lunch on Thursday?").count() == 1

    # Search runs over subject, addresses and body, in the browser.
    alice.click("[data-folder=inbox]")
    alice.fill("#search", "zeppelin")
    assert alice.locator("#list .row").count() == 1 and row(alice, "Quarterly figures").count() == 1
    alice.fill("#search", "remote.test")
    assert row(alice, "Quarterly figures").count() == 1
    alice.fill("#search", "no-such-word-anywhere")
    assert alice.locator("#list .row").count() == 0
    alice.fill("#search", "")

    # Delete to Trash, restore, then delete for good.
    row(alice, "Quarterly figures").click()
    alice.click("#reader button:text-is('Delete')")
    assert row(alice, "Quarterly figures").count() == 0
    alice.click("[data-folder=trash]")
    row(alice, "Quarterly figures").click()
    alice.click("#reader button:text-is('Restore')")
    alice.click("[data-folder=inbox]")
    assert row(alice, "Quarterly figures").count() == 1
    row(alice, "Lunch on Thursday?").click()
    alice.keyboard.press("#")
    alice.click("[data-folder=trash]")
    row(alice, "Lunch on Thursday?").click()
    alice.click("#reader button:text-is('Delete forever')")
    wait_until(alice, lambda: alice.locator("#list .row").count() == 0)
    listed = appliance.admin("store", "ls", "alice", "Mail/").stdout.decode()
    assert listed.count("Mail/In_Json/") == 2 and listed.count("Mail/In/") == 2

    # Log out and back in: the inbox comes from the encrypted cache, read state kept.
    smtp_send(appliance, f"alice@{DOMAIN}", text_mail("alice", "Still unread", "later"))
    check_mail(alice)
    alice.evaluate("window.__mv_left = true")
    alice.click("#account-button")
    alice.click("#logout-button")
    alice.wait_for_selector("#auth:not([hidden])")
    assert alice.evaluate("window.__mv_left") is None
    login(alice, "alice", PASSWORD)
    assert alice.locator("body").get_attribute("data-cached") == "4"
    assert row(alice, "Quarterly figures").count() == 1
    assert "unread" not in (row(alice, "Quarterly figures").get_attribute("class") or "")
    assert "unread" not in (row(alice, "Re: Lunch on Thursday?").get_attribute("class") or "")
    assert "unread" in (row(alice, "Still unread").get_attribute("class") or "")
    cache = appliance.admin("store", "ls", "alice", "Cache/").stdout.decode()
    assert "Cache/W_index" in cache and "Cache/W_state" in cache
    for page in (alice, bob):
        page.context.close()


def test_wrong_password_and_password_change(browser: Any, appliance: Appliance) -> None:
    """A wrong password is refused with one message; a changed password works and the old one stops working."""
    page = new_page(browser, appliance)
    signup(page, "carol")
    page.click("#account-button")
    page.click("#password-button")
    page.fill("#old-password", PASSWORD)
    page.fill("#new-password", "a new long secret")
    page.fill("#new-password2", "a new long secret")
    page.click("#password-form button[type=submit]")
    page.wait_for_selector("#password-dialog", state="hidden", timeout=60_000)
    page.click("#account-button")
    page.click("#logout-button")
    page.wait_for_selector("#auth:not([hidden])")
    page.fill("#login-user", "carol")
    page.fill("#login-password", PASSWORD)
    page.click("#login-form button[type=submit]")
    wait_until(page, lambda: "Wrong" in page.locator("#auth-status").inner_text())
    assert page.locator("#auth-status").inner_text() == "Wrong user name or password."
    login(page, "carol", "a new long secret")
    assert page.locator("#account-button").inner_text() == f"carol@{DOMAIN}"
    page.context.close()
