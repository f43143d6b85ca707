"""Verdicts and the Spam folder in Chromium (docs/webclient.md, "Verdicts and spam"): a real twistd judges mail
against a real DNS server of the test's, and the web client shows who sent it, files spam in its Spam folder and
moves messages with "This is spam" and "Not spam" (the appliance has no ``--rspamd``, so training answers 503 and
the client says so and still moves).

Set ``MV_SCREENSHOTS=docs/screenshots`` to refresh the pictures of the warning and the Spam folder."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from sqlalchemy import create_engine, update

from mailiverse.store.schema import users
from tests.support.browser import base_url, check_mail, login, new_page, row, signup, wait_until
from tests.support.dnsserver import DnsProcess, Zone, start_dns_process
from tests.support.harness import DOMAIN, Appliance
from tests.support.smtp import SmtpSession

pytestmark = pytest.mark.integration

_serial = itertools.count(1)


@pytest.fixture(scope="module")
def dns(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DnsProcess]:
    """A DNS server publishing: good.test (SPF allows 127.0.0.1, DMARC p=reject: its mail is verified);
    weak.test (SPF ~all, DMARC p=none: its mail fails DMARC and is kept, and the built-in spam check's score
    for a soft SPF failure and a DMARC failure stays under its threshold); doubtful.test (SPF -all, DMARC
    p=quarantine: filed as spam)."""
    zone = Zone()
    zone.update(
        {
            "good.test": {"TXT": ["v=spf1 ip4:127.0.0.1 -all"]},
            "_dmarc.good.test": {"TXT": ["v=DMARC1; p=reject"]},
            "weak.test": {"TXT": ["v=spf1 ~all"]},
            "_dmarc.weak.test": {"TXT": ["v=DMARC1; p=none"]},
            "doubtful.test": {"TXT": ["v=spf1 -all"]},
            "_dmarc.doubtful.test": {"TXT": ["v=DMARC1; p=quarantine"]},
        }
    )
    server = start_dns_process(zone, tmp_path_factory.mktemp("dns"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def appliance(tmp_path_factory: pytest.TempPathFactory, dns: DnsProcess) -> Iterator[Appliance]:
    """An appliance with open sign-up and no spam filter to train, its lookups going to the test's DNS server."""
    host, port = dns.address
    app = Appliance(
        tmp_path_factory.mktemp("verdicts") / "appliance",
        extra_args=["--open-signup", "--workers", "1", "--dns-server", f"{host}:{port}"],
    )
    app.start()
    try:
        yield app
    finally:
        app.stop()


def deliver(app: Appliance, rcpt: str, envelope_from: str, header_from: str, subject: str) -> None:
    """Send a message over the MX listener from 127.0.0.1, as a remote server would; it must be accepted."""
    body = (
        f"From: {header_from}\r\nTo: {rcpt}\r\nSubject: {subject}\r\n"
        f"Message-ID: <verdict-{next(_serial)}@test>\r\nDate: Sun, 06 Dec 2026 10:00:00 +0000\r\n\r\n"
        f"This is the message called {subject}.\r\n"
    ).encode()
    session = SmtpSession(app.smtp_port, timeout=60)
    try:
        session.hello()
        session.envelope([rcpt], sender=envelope_from)
        code, reply = session.send_data(body)
    finally:
        session.close()
    assert code == 250, reply


def stored_paths(page: Any, app: Appliance, prefix: str) -> list[str]:
    """The paths under ``prefix`` as the logged-in page's session lists them through ``GET /api/store``."""
    response = page.request.get(f"{base_url(app)}/api/store?{urlencode({'prefix': prefix, 'limit': '1000'})}")
    assert response.ok, response.text()
    return [item["path"] for item in response.json()["objects"]]


def open_folder(page: Any, folder: str) -> None:
    page.click(f"#folders [data-folder={folder}]")
    wait_until(page, lambda: page.get_attribute(f"#folders [data-folder={folder}]", "aria-current") == "page")


def open_message(page: Any, subject: str) -> None:
    row(page, subject).click()
    wait_until(page, lambda: page.locator("#reader-subject").count() == 1
               and page.inner_text("#reader-subject") == subject)  # fmt: skip


def answer_consent(page: Any, button: str) -> None:
    """Answer the training question: ``learn-yes`` (send it and move) or ``learn-no`` (only move)."""
    page.wait_for_selector("#learn-dialog[open]")
    assert "The server reads it once and keeps nothing." in page.inner_text("#learn-question")
    page.click(f"#{button}")


def wait_status(page: Any, text: str, before: str = "") -> str:
    """The status line once it says ``text`` (and no longer what it said ``before`` the action)."""

    def said() -> bool:
        now = page.inner_text("#app-status")
        return text in now and now != before

    try:
        wait_until(page, said, 30.0)
    except AssertionError:
        raise AssertionError(f"the status line says {page.inner_text('#app-status')!r}") from None
    status: str = page.inner_text("#app-status")
    return status


def screenshots() -> Path | None:
    folder = os.environ.get("MV_SCREENSHOTS")
    return Path(folder) if folder else None


def test_verified_failed_and_unverified_senders(browser: Any, appliance: Appliance, tmp_path: Path) -> None:
    """A DMARC-verified sender gets a check mark in the list and "Verified sender: good.test" in the reader; a
    sender failing DMARC (p=none, so kept in the inbox) a warning mark and an alert naming the address it may not
    be from and the failed check; a sender without DMARC is said quietly to be not verified."""
    page = new_page(browser, appliance, viewport={"width": 1280, "height": 800})
    signup(page, "vera")
    rcpt = f"vera@{DOMAIN}"
    deliver(appliance, rcpt, "bounce@good.test", "Good News <news@good.test>", "Your order shipped")
    deliver(appliance, rcpt, "bounce@weak.test", "Your Bank <alerts@weak.test>", "Confirm your account now")
    deliver(appliance, rcpt, "bob@remote.test", "Bob <bob@remote.test>", "Lunch tomorrow")
    check_mail(page)

    verified, failed, plain = (
        row(page, s) for s in ("Your order shipped", "Confirm your account now", "Lunch tomorrow")
    )
    assert verified.get_attribute("data-verdict") == "verified"
    assert verified.locator(".mark.verified").count() == 1
    assert "Verified sender." in (verified.get_attribute("aria-label") or "")
    assert failed.get_attribute("data-verdict") == "failed"
    assert failed.locator(".mark.failed").is_visible()
    assert "Warning: sender not proven." in (failed.get_attribute("aria-label") or "")
    assert plain.get_attribute("data-verdict") == "unverified"
    assert plain.locator(".mark").count() == 0

    open_message(page, "Your order shipped")
    assert page.get_attribute("#verdict", "data-verdict") == "verified"
    assert page.inner_text("#verdict .verdict-text") == "Verified sender: good.test"
    assert page.locator("#spam-button").is_visible()

    open_message(page, "Lunch tomorrow")
    assert page.inner_text("#verdict .verdict-text") == "Sender not verified"
    assert page.get_attribute("#verdict", "role") == "note"

    open_message(page, "Confirm your account now")
    warning = page.locator("#verdict")
    assert warning.get_attribute("role") == "alert"
    assert warning.get_attribute("data-verdict") == "failed"
    text = page.inner_text("#verdict .verdict-text")
    assert text.startswith("Warning: this message failed the checks that prove who sent it.")
    assert "It may not be from alerts@weak.test." in text
    assert "Do not trust links or requests in it." in text
    assert page.inner_text("#verdict details summary") == "Checks that failed: SPF, DMARC"
    page.click("#verdict details summary")
    checks = page.locator("#verdict details li")
    dmarc = checks.filter(has_text="(DMARC)")
    assert dmarc.count() == 1 and "bad" in (dmarc.get_attribute("class") or "")
    assert "for weak.test: failed; the domain asks receivers only to report such mail" in dmarc.inner_text()
    spf = checks.filter(has_text="(SPF) for weak.test: failed (the domain calls it doubtful)")
    assert spf.count() == 1 and "bad" in (spf.get_attribute("class") or "")
    folder = screenshots()
    if folder:
        folder.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(folder / "verdict-warning.png"))
    page.context.close()


def test_quarantined_mail_is_in_spam_and_not_spam_moves_it(browser: Any, appliance: Appliance) -> None:
    """Mail failing DMARC under p=quarantine is listed in Spam (not the inbox) with why; "Not spam" with consent
    asks the appliance to learn (503: the client says training is not available) and still moves both objects to
    Mail/In, where the message stays after a fresh login."""
    page = new_page(browser, appliance, viewport={"width": 1280, "height": 800})
    signup(page, "quinn")
    deliver(appliance, f"quinn@{DOMAIN}", "list@doubtful.test", "A List <list@doubtful.test>", "You have won")
    check_mail(page)
    assert row(page, "You have won").count() == 0
    (twin,) = stored_paths(page, appliance, "Mail/Spam_Json/")
    key = twin.rsplit("/", 1)[1]
    assert stored_paths(page, appliance, "Mail/Spam/") == [f"Mail/Spam/{key}"]

    assert page.inner_text("#count-spam") == "1"
    open_folder(page, "spam")
    assert page.inner_text("#list-title") == "Spam"
    open_message(page, "You have won")
    notice = page.inner_text("#spam-notice")
    assert "This message is in Spam." in notice
    assert "which asks for such mail to be treated as spam" in notice
    assert page.get_attribute("#verdict", "data-verdict") == "failed"
    assert page.locator("#spam-button").count() == 0
    folder = screenshots()
    if folder:
        folder.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(folder / "spam-folder.png"))

    learned: list[int] = []
    page.on("response", lambda r: learned.append(r.status) if "/api/learn/ham" in r.url else None)
    page.click("#not-spam-button")
    answer_consent(page, "learn-yes")
    status = wait_status(page, "Moved to the inbox.")
    assert "Training is not available: this server has no spam filter to teach." in status
    assert learned == [503]
    assert row(page, "You have won").count() == 0
    assert stored_paths(page, appliance, "Mail/Spam") == []
    assert stored_paths(page, appliance, f"Mail/In_Json/{key}") == [f"Mail/In_Json/{key}"]
    assert stored_paths(page, appliance, f"Mail/In/{key}") == [f"Mail/In/{key}"]
    open_folder(page, "inbox")
    assert row(page, "You have won").count() == 1

    fresh = new_page(browser, appliance)
    login(fresh, "quinn")
    assert row(fresh, "You have won").count() == 1
    open_folder(fresh, "spam")
    assert row(fresh, "You have won").count() == 0
    fresh.context.close()
    page.context.close()


def test_this_is_spam_moves_inbox_mail_to_spam(browser: Any, appliance: Appliance) -> None:
    """ "This is spam" with consent: training answers 503, the user is told, both objects move to Mail/Spam and
    the message is listed in Spam; declining the question (the ! key) moves another without sending it."""
    page = new_page(browser, appliance, viewport={"width": 1280, "height": 800})
    signup(page, "sam")
    deliver(appliance, f"sam@{DOMAIN}", "bob@remote.test", "Bob <bob@remote.test>", "Cheap watches")
    deliver(appliance, f"sam@{DOMAIN}", "bob@remote.test", "Bob <bob@remote.test>", "Cheaper watches")
    check_mail(page)
    learned: list[str] = []
    page.on("request", lambda r: learned.append(r.url) if "/api/learn/" in r.url else None)

    open_message(page, "Cheap watches")
    inbox = stored_paths(page, appliance, "Mail/In_Json/")
    page.click("#spam-button")
    answer_consent(page, "learn-yes")
    status = wait_status(page, "Moved to Spam.")
    assert "Training is not available" in status
    assert len(learned) == 1 and learned[0].endswith("/api/learn/spam")
    spam = stored_paths(page, appliance, "Mail/Spam_Json/")
    assert len(spam) == 1 and spam[0].replace("Mail/Spam_Json/", "Mail/In_Json/") in inbox
    assert stored_paths(page, appliance, "Mail/Spam/") == [spam[0].replace("Mail/Spam_Json/", "Mail/Spam/")]
    assert row(page, "Cheap watches").count() == 0

    open_message(page, "Cheaper watches")
    page.keyboard.press("!")
    answer_consent(page, "learn-no")
    status = wait_status(page, "Moved to Spam.", before=status)
    assert "Training" not in status and "taught" not in status
    assert len(learned) == 1
    assert stored_paths(page, appliance, "Mail/In_Json/") == []
    assert len(stored_paths(page, appliance, "Mail/Spam/")) == 2
    open_folder(page, "spam")
    assert row(page, "Cheap watches").count() == 1 and row(page, "Cheaper watches").count() == 1
    page.context.close()


def as_v1_account(app: Appliance, name: str) -> None:
    """Make ``name``'s mail be delivered in the original v1 format, as for a legacy account upgraded to the modern
    login (docs/legacy.md): new sign-ups are v2 only."""
    engine = create_engine(f"sqlite:///{app.data_dir / 'mailiverse.sqlite3'}")
    try:
        with engine.begin() as conn:
            changed = conn.execute(update(users).where(users.c.name == name).values(envelope_format="v1"))
            assert changed.rowcount == 1
    finally:
        engine.dispose()


def test_v1_account_spam_kept_in_the_inbox_is_shown_in_spam(browser: Any, appliance: Appliance) -> None:
    """A v1 account's quarantined mail stays in Mail/In (its original clients list only that) yet is listed in
    Spam; "Not spam" (declining training) moves nothing on the server and lists it in the inbox from then on."""
    page = new_page(browser, appliance, viewport={"width": 1280, "height": 800})
    signup(page, "olga")
    as_v1_account(appliance, "olga")
    deliver(appliance, f"olga@{DOMAIN}", "list@doubtful.test", "A List <list@doubtful.test>", "Claim your prize")
    check_mail(page)
    assert len(stored_paths(page, appliance, "Mail/In_Json/")) == 1
    assert stored_paths(page, appliance, "Mail/Spam") == []
    assert row(page, "Claim your prize").count() == 0
    assert page.inner_text("#count-spam") == "1"
    open_folder(page, "spam")
    open_message(page, "Claim your prize")
    assert "This message is in Spam." in page.inner_text("#spam-notice")
    page.click("#not-spam-button")
    answer_consent(page, "learn-no")
    wait_status(page, "Moved to the inbox.")
    assert stored_paths(page, appliance, "Mail/Spam") == []
    assert len(stored_paths(page, appliance, "Mail/In_Json/")) == 1
    assert row(page, "Claim your prize").count() == 0
    open_folder(page, "inbox")
    assert row(page, "Claim your prize").count() == 1
    page.click("#account-button")
    page.click("#logout-button")
    page.wait_for_selector("#auth:not([hidden])", timeout=60_000)
    login(page, "olga")
    assert row(page, "Claim your prize").count() == 1
    page.context.close()
