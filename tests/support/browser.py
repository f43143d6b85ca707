"""Drive the web client in Debian's Chromium under Playwright against a real appliance, and the mail it receives.

Pages, sign-up and log-in through the forms, waiting on the client's sync counter, list rows, and
messages delivered over SMTP with STARTTLS as a remote sender would. The fixtures (the browser and
the appliance) are in tests/browser/conftest.py.
"""

from __future__ import annotations

import os
import re
import smtplib
import ssl
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from tests.support.harness import DOMAIN, Appliance, self_signed_cert

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
PASSWORD = "correct horse battery"


def require_chromium() -> None:
    """Skip without Debian's Chromium, but fail when ``CI`` is set."""
    if CHROMIUM.exists():
        return
    if os.environ.get("CI"):
        pytest.fail("/usr/bin/chromium is required in CI (Debian package chromium)")
    pytest.skip("/usr/bin/chromium is not installed (apt-get install chromium) and CI is not set")


def base_url(app: Appliance) -> str:
    """The appliance's web client, by address (the page accepts its self-signed certificate)."""
    return f"https://127.0.0.1:{app.web_port}"


def new_page(browser: Any, app: Appliance, **options: Any) -> Any:
    """A fresh context (own cookies) and page on the appliance."""
    context = browser.new_context(ignore_https_errors=True, accept_downloads=True, **options)
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(base_url(app) + "/")
    return page


def signup(page: Any, name: str, password: str = PASSWORD) -> None:
    """Sign up through the form; the client then logs in by itself."""
    page.click("#tab-signup")
    page.fill("#signup-user", name)
    page.fill("#signup-password", password)
    page.fill("#signup-password2", password)
    page.click("#signup-form button[type=submit]")
    page.wait_for_selector("#app:not([hidden])", timeout=180_000)
    wait_synced(page, 1)


def login(page: Any, name: str, password: str = PASSWORD) -> None:
    """Log in through the form and wait for the first sync."""
    page.fill("#login-user", name)
    page.fill("#login-password", password)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#app:not([hidden])", timeout=180_000)
    wait_synced(page, 1)


def wait_until(page: Any, predicate: Any, timeout: float = 60.0) -> None:
    """Poll ``predicate()`` from Python (wait_for_function would need 'unsafe-eval' under our CSP)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        page.wait_for_timeout(50)


def synced(page: Any) -> int:
    """How many syncs the client has finished (the ``data-synced`` attribute of the body)."""
    return int(page.locator("body").get_attribute("data-synced") or 0)


def wait_synced(page: Any, at_least: int) -> None:
    """Wait until the client has finished ``at_least`` syncs."""
    wait_until(page, lambda: synced(page) >= at_least, 120.0)


def check_mail(page: Any) -> None:
    """Press the check-mail button and wait for that sync to finish."""
    before = synced(page)
    page.click("#refresh-button")
    wait_synced(page, before + 1)


def row(page: Any, subject: str) -> Any:
    """The list rows whose subject is exactly ``subject``."""
    exact = re.compile(r"^(📎 )?" + re.escape(subject) + "$")
    return page.locator("#list .row").filter(has=page.locator(".subject", has_text=exact))


def _tls(app: Appliance) -> ssl.SSLContext:
    """Trust the appliance's own certificate; smtplib names the peer 127.0.0.1, so the name is not checked."""
    ctx = ssl.create_default_context(cafile=str(self_signed_cert(app)))
    ctx.check_hostname = False
    return ctx


def smtp_send(app: Appliance, to: str, message: EmailMessage | bytes) -> None:
    """Deliver a message to the appliance over SMTP with STARTTLS, as a remote sender would."""
    data = message if isinstance(message, bytes) else message.as_bytes(policy=message.policy.clone(linesep="\r\n"))
    with smtplib.SMTP("127.0.0.1", app.smtp_port, local_hostname="client.test", timeout=30) as smtp:
        smtp.ehlo()
        smtp.starttls(context=_tls(app))
        smtp.ehlo()
        assert smtp.sendmail("bob@remote.test", [to], data) == {}


def text_mail(to_user: str, subject: str, body: str, sender: str = "Robert Remote <bob@remote.test>") -> EmailMessage:
    """A plain text message to ``to_user`` at the test domain."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = f"{to_user}@{DOMAIN}"
    msg["Subject"] = subject
    msg["Date"] = "Sat, 21 Nov 2026 10:00:00 +0000"
    msg["Message-ID"] = f"<{abs(hash(subject))}@remote.test>"
    msg.set_content(body)
    return msg


def html_mail(subject: str, html: str) -> EmailMessage:
    """An HTML message from Mallory to victim, with a plain alternative."""
    msg = EmailMessage()
    msg["From"] = "Mallory <mallory@remote.test>"
    msg["To"] = f"victim@{DOMAIN}"
    msg["Subject"] = subject
    msg.set_content("plain alternative")
    msg.add_alternative(html, subtype="html")
    return msg
