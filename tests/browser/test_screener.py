"""The screener in the web client (docs/webclient.md, "The screener") in Debian's Chromium against a real twistd:
the setting on the Addresses page turns it on (a v1 account gets the server's refusal), mail over SMTP from a new
sender is listed in the Screener folder, not the inbox; Approve moves it to the inbox and lets the sender's next
message straight in; Block asks, deletes the message and makes the appliance refuse the sender's next one with
550 at the end of DATA (checked over SMTP); Unblock screens them again; mail sent from the page with the Hashcash
box ticked skips another local user's screener.

Set ``MV_SCREENSHOTS=docs/screenshots`` to refresh the pictures of the Screener folder and the setting."""

from __future__ import annotations

import datetime
import email
import email.policy
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from sqlalchemy import create_engine, update

from mailiverse import hashcash
from mailiverse.client.api import Client
from mailiverse.client.transport import HttpsTransport
from mailiverse.store.schema import users
from tests.support.browser import (
    PASSWORD,
    base_url,
    check_mail,
    new_page,
    row,
    signup,
    smtp_send,
    text_mail,
    wait_until,
)
from tests.support.harness import DOMAIN, Appliance, self_signed_cert
from tests.support.smtp import SmtpSession

pytestmark = pytest.mark.integration


def screenshots() -> Path | None:
    folder = os.environ.get("MV_SCREENSHOTS")
    return Path(folder) if folder else None


def stored(page: Any, app: Appliance, prefix: str) -> list[str]:
    """The paths ``GET /api/store`` lists under ``prefix`` for the page's session (what the server holds)."""
    response = page.request.get(f"{base_url(app)}/api/store?{urlencode({'prefix': prefix})}")
    assert response.ok, response.text()
    return [o["path"] for o in response.json()["objects"]]


def exists(page: Any, app: Appliance, path: str) -> bool:
    response = page.request.get(f"{base_url(app)}/api/store/{quote(path)}")
    assert response.status in (200, 404), response.text()
    return bool(response.status == 200)


def screener_state(page: Any, app: Appliance) -> dict[str, Any]:
    response = page.request.get(f"{base_url(app)}/api/screener")
    assert response.ok, response.text()
    state: dict[str, Any] = response.json()
    return state


def open_addresses(page: Any) -> None:
    page.click("#addresses-link")
    page.wait_for_selector("#screener-settings:not([hidden])")
    wait_until(page, lambda: page.inner_text("#screener-counts") != "")


def turn_screener_on(page: Any, app: Appliance) -> None:
    """Tick "Screen first-time senders" on the Addresses page and wait for the server to say it is on."""
    open_addresses(page)
    assert not page.is_checked("#screener-enabled")
    page.check("#screener-enabled")
    wait_until(page, lambda: page.inner_text("#screener-status").startswith("On:"))
    assert screener_state(page, app)["enabled"] is True


def show_folder(page: Any, folder: str) -> None:
    page.click(f"#folders [data-folder={folder}]")
    wait_until(page, lambda: page.get_attribute(f"#folders [data-folder={folder}]", "aria-current") == "page")


def open_message(page: Any, subject: str) -> None:
    row(page, subject).first.click()
    wait_until(page, lambda: page.locator("#reader-subject").count() == 1
               and page.inner_text("#reader-subject") == subject)  # fmt: skip


def end_of_data(app: Appliance, sender: str, rcpt: str, subject: str) -> tuple[int, bytes]:
    """Send a message from ``sender`` over plain SMTP; the appliance's reply to the end of DATA."""
    session = SmtpSession(app.smtp_port, timeout=60)
    try:
        session.hello()
        session.envelope([rcpt], sender=sender)
        body = (
            f"From: {sender}\r\nTo: {rcpt}\r\nSubject: {subject}\r\nMessage-ID: <{abs(hash(subject))}@screen.test>\r\n"
            f"Date: Sun, 06 Dec 2026 10:00:00 +0000\r\n\r\nHello again.\r\n"
        ).encode()
        reply = session.send_data(body)
        session.command(b"QUIT\r\n")
    finally:
        session.close()
    return reply


def test_screener_approve_block_and_unblock(browser: Any, appliance: Appliance) -> None:
    """With the screener turned on in the page, a new sender's mail is listed in Screener (with a count), not in
    the inbox; Approve sender moves both objects to Mail/In and the sender's next message lands in the inbox;
    Block sender asks first (Cancel changes nothing), then deletes both objects, and the sender's next message is
    refused with 550 5.7.1 at the end of DATA; the setting shows the counts; Unblock screens them again."""
    erin = new_page(browser, appliance, viewport={"width": 1280, "height": 800})
    signup(erin, "erin")
    rcpt = f"erin@{DOMAIN}"
    assert erin.locator("#screener-folder").is_hidden()
    turn_screener_on(erin, appliance)
    assert erin.inner_text("#screener-counts") == "0 approved senders, 0 blocked senders."
    wait_until(erin, lambda: erin.locator("#screener-folder").is_visible())

    # A first-time sender: screened, listed in Screener with a count, not in the inbox.
    nina = "Nina New <nina@first.test>"
    smtp_send(appliance, rcpt, text_mail("erin", "Hello from Nina", "We met at the fair.", nina))
    show_folder(erin, "inbox")
    check_mail(erin)
    assert row(erin, "Hello from Nina").count() == 0
    [screened] = stored(erin, appliance, "Mail/Screener_Json/")
    key = screened.rsplit("/", 1)[1]
    assert stored(erin, appliance, "Mail/In_Json/") == []
    wait_until(erin, lambda: erin.inner_text("#count-screener") == "1")
    show_folder(erin, "screener")
    assert erin.inner_text("#list-title") == "Screener"
    wait_until(erin, lambda: row(erin, "Hello from Nina").count() == 1)
    open_message(erin, "Hello from Nina")
    banner = erin.inner_text("#screener-banner")
    assert "First message from nina@first.test. Let them in?" in banner
    assert erin.locator("#screener-approve").inner_text() == "Approve sender"
    assert erin.locator("#screener-block").inner_text() == "Block sender"
    folder = screenshots()
    if folder:
        folder.mkdir(parents=True, exist_ok=True)
        erin.screenshot(path=str(folder / "screener.png"))

    # Approve: the sender approved, both objects moved to Mail/In.
    erin.click("#screener-approve")
    wait_until(erin, lambda: "nina@first.test is approved" in erin.inner_text("#app-status"))
    wait_until(erin, lambda: row(erin, "Hello from Nina").count() == 0)
    assert erin.locator("#reader").is_hidden()
    assert stored(erin, appliance, "Mail/Screener") == []
    assert exists(erin, appliance, f"Mail/In/{key}") and exists(erin, appliance, f"Mail/In_Json/{key}")
    assert screener_state(erin, appliance)["approved"] == 1
    assert erin.inner_text("#count-screener") == ""
    show_folder(erin, "inbox")
    wait_until(erin, lambda: row(erin, "Hello from Nina").count() == 1)

    # The approved sender's next message goes straight to the inbox.
    smtp_send(appliance, rcpt, text_mail("erin", "Nina again", "Straight in.", nina))
    check_mail(erin)
    wait_until(erin, lambda: row(erin, "Nina again").count() == 1)
    assert stored(erin, appliance, "Mail/Screener") == []

    # Another first-time sender, screened; Block asks first and Cancel changes nothing.
    smtp_send(appliance, rcpt, text_mail("erin", "Buy now", "Limited offer.", "Pushy <pushy@second.test>"))
    check_mail(erin)
    assert row(erin, "Buy now").count() == 0
    wait_until(erin, lambda: erin.inner_text("#count-screener") == "1")
    [pushy] = stored(erin, appliance, "Mail/Screener_Json/")
    pushy_key = pushy.rsplit("/", 1)[1]
    show_folder(erin, "screener")
    wait_until(erin, lambda: row(erin, "Buy now").count() == 1)
    open_message(erin, "Buy now")
    assert "First message from pushy@second.test" in erin.inner_text("#screener-banner")
    erin.click("#screener-block")
    erin.wait_for_selector("#screener-block-dialog[open]")
    assert "Their mail will be refused from now on" in erin.inner_text("#screener-block-text")
    erin.click("#screener-block-cancel")
    erin.wait_for_selector("#screener-block-dialog", state="hidden")
    assert screener_state(erin, appliance)["blocked"] == 0
    assert exists(erin, appliance, f"Mail/Screener/{pushy_key}")

    # Block: the sender blocked, both objects deleted, the next message refused at the end of DATA.
    erin.click("#screener-block")
    erin.wait_for_selector("#screener-block-dialog[open]")
    erin.click("#screener-block-yes")
    wait_until(erin, lambda: "pushy@second.test is blocked" in erin.inner_text("#app-status"))
    wait_until(erin, lambda: row(erin, "Buy now").count() == 0)
    assert not exists(erin, appliance, f"Mail/Screener/{pushy_key}")
    assert not exists(erin, appliance, f"Mail/Screener_Json/{pushy_key}")
    assert stored(erin, appliance, "Mail/Screener") == []
    code, reply = end_of_data(appliance, "pushy@second.test", rcpt, "Buy now, really")
    assert code == 550 and b"5.7.1" in reply, reply
    assert end_of_data(appliance, "nina@first.test", rcpt, "Nina a third time")[0] == 250
    assert stored(erin, appliance, "Mail/Screener") == []

    # The setting shows the counts; Unblock screens the sender again.
    open_addresses(erin)
    wait_until(erin, lambda: erin.inner_text("#screener-counts") == "1 approved sender, 1 blocked sender.")
    assert erin.is_checked("#screener-enabled")
    if folder:
        # The page's passing status line (fixed at the bottom) would cover the section in the picture.
        erin.evaluate("document.getElementById('app-status').textContent = ''")
        erin.locator("#screener-settings").screenshot(path=str(folder / "screener-setting.png"))
    erin.fill("#screener-forget", "pushy@second.test")
    erin.click("#screener-forget-button")
    wait_until(erin, lambda: "screened again" in erin.inner_text("#screener-status"))
    wait_until(erin, lambda: erin.inner_text("#screener-counts") == "1 approved sender, 0 blocked senders.")
    assert end_of_data(appliance, "pushy@second.test", rcpt, "Buy now, please")[0] == 250
    assert len(stored(erin, appliance, "Mail/Screener_Json/")) == 1

    # Off: a new sender's mail goes to the inbox again.
    erin.uncheck("#screener-enabled")
    wait_until(erin, lambda: erin.inner_text("#screener-status").startswith("Off:"))
    assert screener_state(erin, appliance)["enabled"] is False
    smtp_send(appliance, rcpt, text_mail("erin", "Hi from Otto", "Unscreened.", "Otto <otto@third.test>"))
    show_folder(erin, "inbox")
    check_mail(erin)
    wait_until(erin, lambda: row(erin, "Hi from Otto").count() == 1)
    # The folder stays while it has mail (the second screened message from pushy).
    assert erin.locator("#screener-folder").is_visible() and erin.inner_text("#count-screener") == "1"
    erin.context.close()


def test_hashcash_from_the_page_skips_the_screener(browser: Any, appliance: Appliance) -> None:
    """Mail from the page to a local user whose screener is on is screened without a stamp and lands in that
    user's inbox with the Hashcash box ticked; it carries one valid stamp for the recipient, which a replay over
    SMTP cannot spend again; approving the sender from the screened message lets the next one in."""
    dave = new_page(browser, appliance)
    signup(dave, "dave")
    turn_screener_on(dave, appliance)
    carol = new_page(browser, appliance)
    signup(carol, "carol")

    def send(subject: str, stamp: bool) -> None:
        carol.click("#compose-button")
        carol.wait_for_selector("#compose[open]")
        assert not carol.is_checked("#compose-hashcash")
        assert "a second or two per recipient" in carol.inner_text("#compose-hashcash-hint")
        carol.fill("#compose-to", f"dave@{DOMAIN}")
        carol.fill("#compose-subject", subject)
        carol.fill("#compose-text", "Hello Dave.")
        if stamp:
            carol.check("#compose-hashcash")
        carol.click("#send-button")
        carol.wait_for_selector("#compose", state="hidden")

    # Without the stamp: screened (the sender is carol's account); with it: in dave's inbox.
    send("Without a stamp", stamp=False)
    wait_until(dave, lambda: len(stored(dave, appliance, "Mail/Screener_Json/")) == 1)
    assert stored(dave, appliance, "Mail/In_Json/") == []
    send("With a stamp", stamp=True)
    wait_until(dave, lambda: len(stored(dave, appliance, "Mail/In_Json/")) == 1)
    assert len(stored(dave, appliance, "Mail/Screener_Json/")) == 1
    show_folder(dave, "inbox")
    check_mail(dave)
    wait_until(dave, lambda: row(dave, "With a stamp").count() == 1)
    assert row(dave, "Without a stamp").count() == 0

    # The message dave got (opened with his key by mailiverse-client's code) carries one valid 20-bit stamp for
    # his address, now spent: the same message arriving over SMTP (from an outside sender) is screened.
    client = Client(HttpsTransport(base_url(appliance), ca_file=str(self_signed_cert(appliance))), "dave")
    client.login(PASSWORD)
    try:
        [path] = stored(dave, appliance, "Mail/In/")
        original = client.open_mail(path)
    finally:
        client.close()
    message = email.message_from_bytes(original, policy=email.policy.default)
    stamps = message.get_all("X-Hashcash") or []
    assert len(stamps) == 1 and message["Subject"] == "With a stamp"
    checked = hashcash.check(str(stamps[0]), resource=f"dave@{DOMAIN}", now=datetime.datetime.now(datetime.UTC))
    assert checked.bits >= 20
    # From outside, a local domain's From is refused: the stamp is bound to the recipient, not the sender.
    replayed = re.sub(rb"(?m)^From: [^\r\n]*", b"From: Carol Away <carol@away.test>", original, count=1)
    smtp_send(appliance, f"dave@{DOMAIN}", replayed)
    wait_until(dave, lambda: len(stored(dave, appliance, "Mail/Screener_Json/")) == 2)
    assert len(stored(dave, appliance, "Mail/In_Json/")) == 1

    # Dave approves carol from her screened message; her next message without a stamp reaches his inbox.
    show_folder(dave, "screener")
    check_mail(dave)
    wait_until(dave, lambda: row(dave, "Without a stamp").count() == 1)
    open_message(dave, "Without a stamp")
    assert f"First message from carol@{DOMAIN}." in dave.inner_text("#screener-banner")
    dave.click("#screener-approve")
    wait_until(dave, lambda: f"carol@{DOMAIN} is approved" in dave.inner_text("#app-status"))
    wait_until(dave, lambda: len(stored(dave, appliance, "Mail/In_Json/")) == 2)
    send("Approved now", stamp=False)
    wait_until(dave, lambda: len(stored(dave, appliance, "Mail/In_Json/")) == 3)
    assert len(stored(dave, appliance, "Mail/Screener_Json/")) == 1
    carol.context.close()
    dave.context.close()


def as_v1_account(app: Appliance, name: str) -> None:
    """Make ``name`` an account read by original Mailiverse clients (envelope v1), as a legacy account is."""
    engine = create_engine(f"sqlite:///{app.data_dir / 'mailiverse.sqlite3'}")
    try:
        with engine.begin() as conn:
            changed = conn.execute(update(users).where(users.c.name == name).values(envelope_format="v1"))
            assert changed.rowcount == 1
    finally:
        engine.dispose()


def test_v1_account_gets_the_servers_refusal(browser: Any, appliance: Appliance) -> None:
    """An account read by original Mailiverse clients cannot turn the screener on: the page shows the server's
    409 message and the box stays unticked."""
    page = new_page(browser, appliance)
    signup(page, "vera")
    as_v1_account(appliance, "vera")
    open_addresses(page)
    page.click("#screener-enabled")
    wait_until(page, lambda: "original Mailiverse clients" in page.inner_text("#screener-status"))
    assert "error" in (page.get_attribute("#screener-status", "class") or "")
    assert not page.is_checked("#screener-enabled")
    assert screener_state(page, appliance)["enabled"] is False
    page.context.close()
