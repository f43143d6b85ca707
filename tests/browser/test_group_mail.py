"""A group's mailbox in the web client (issue 20) in Debian's Chromium against a real twistd: alice and bob sign up
in the browser (bob with an invite), alice makes the group sales@ with the real ``mailiverse-client`` and adds bob;
mail to sales@ arrives over SMTP, sealed to the group's key only; bob opens Groups, sales and reads it. The
browser unwrapped the group's private key with bob's key and checked the group's key against the key directory
first; nothing of the group's mailbox went into bob's own store. When the server hands bob a group key that is
not the one the directory publishes, or names another key as current, the red key alarm goes up and no mail of
the group is shown.

Set ``MV_SCREENSHOTS=docs/screenshots`` to refresh the picture of a group's mailbox (group-mail.png)."""

from __future__ import annotations

import base64
import json
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key

from mailiverse.compat.blocks import decrypt_key_block
from mailiverse.crypto.errors import CryptoError
from mailiverse.crypto.formats import open_mail_object, seal_mail_object
from mailiverse.crypto.kdf import derive_keys, parse_kdf
from mailiverse.crypto.keys import generate_private_key, load_private_key, private_key_der
from tests.support.browser import (
    PASSWORD,
    base_url,
    check_mail,
    new_page,
    require_chromium,
    row,
    signup,
    wait_synced,
    wait_until,
)
from tests.support.e2e import Device
from tests.support.harness import DOMAIN, Appliance
from tests.support.smtp import SmtpSession

pytestmark = pytest.mark.integration

SALES = f"sales@{DOMAIN}"
BOB = f"bob@{DOMAIN}"
SUBJECT = "Quote for the team"
BODY = "The quote for 40 bicycles is attached in spirit."
GROUP_ANSWER = re.compile(r".*/api/groups/sales$")


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:
    """An appliance whose sign-up is by invite (the first account excepted), as in tests/client/test_keys_cli.py."""
    require_chromium()
    appliance = Appliance(tmp_path_factory.mktemp("groups") / "appliance")
    appliance.start()
    try:
        yield appliance
    finally:
        appliance.stop()


def keys_checked(page: Any) -> int:
    return int(page.locator("body").get_attribute("data-keys-checked") or 0)


def group_synced(page: Any) -> int:
    return int(page.locator("body").get_attribute("data-group-synced") or 0)


def signup_with_invite(page: Any, name: str, invite: str) -> None:
    page.click("#tab-signup")
    page.fill("#signup-user", name)
    page.fill("#signup-password", PASSWORD)
    page.fill("#signup-password2", PASSWORD)
    page.fill("#signup-invite", invite)
    page.click("#signup-form button[type=submit]")
    page.wait_for_selector("#app:not([hidden])", timeout=180_000)
    wait_synced(page, 1)


def api(page: Any, app: Appliance, path: str) -> Any:
    """GET ``path`` with the page's session from the real server."""
    response = page.context.request.get(base_url(app) + path)
    assert response.ok, (path, response.status, response.text())
    return response


def own_private_key(page: Any, app: Appliance) -> rsa.RSAPrivateKey:
    """The account's private key, from its key block opened here with the password."""
    account = api(page, app, "/api/account").json()
    crypto, _verification = derive_keys(PASSWORD, parse_kdf(account["kdf"]))
    environment = decrypt_key_block(crypto, base64.b64decode(account["key_block"]))
    return load_private_key(base64.b64decode(environment["RSA-PrivateKey"]))


def own_objects(page: Any, app: Appliance, prefix: str) -> list[tuple[str, int]]:
    listed = api(page, app, f"/api/store?prefix={prefix}&limit=1000").json()["objects"]
    return sorted((o["path"], o["version"]) for o in listed)


def deliver(app: Appliance, to: str, subject: str, body: str) -> None:
    message = (
        f"From: Carol <carol@remote.test>\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Date: Sat, 21 Nov 2026 10:00:00 +0000\r\nMessage-ID: <group-{uuid.uuid4()}@remote.test>\r\n\r\n{body}\r\n"
    ).encode()
    session = SmtpSession(app.smtp_port, timeout=60)
    try:
        session.hello()
        session.envelope([to], sender="carol@remote.test")
        code, reply = session.send_data(message)
        assert code == 250, reply
    finally:
        session.close()


def open_sales(page: Any) -> None:
    """Groups, sales: wait until the group's key was checked and (if it verified) its mailbox synced."""
    before = group_synced(page)
    alarms = page.locator("#key-alarm .key-alarm-line").count()
    page.click("#group-links [data-group=sales]")
    wait_until(page, lambda: page.get_attribute("#group-links [data-group=sales]", "aria-current") == "page")
    wait_until(page, lambda: group_synced(page) > before or page.locator("#key-alarm .key-alarm-line").count() > alarms)


def test_member_reads_group_mail_and_a_wrong_group_key_is_refused(browser: Any, app: Appliance, tmp_path: Path) -> None:
    alice = new_page(browser, app)
    signup(alice, "alice")
    bob = new_page(browser, app)
    signup_with_invite(bob, "bob", app.admin("invite", "create").stdout.decode().strip())
    for page in (alice, bob):  # the login-time watch published each account's first key record
        wait_until(page, lambda page=page: keys_checked(page) >= 1, 120.0)
        assert page.locator("#key-alarm").is_hidden()
    assert bob.locator("#groups-nav").is_hidden()  # no groups yet

    # alice makes the group and wraps its key to bob's verified key, with the real CLI.
    device = Device(tmp_path / "device", app)
    device.home.mkdir()
    for command in (("group", "new", SALES), ("group", "add", SALES, BOB)):
        done = device.cli("alice", *command, password=PASSWORD)
        assert done.returncode == 0 and "KEY ALARM" not in done.stderr, (command, done.stdout, done.stderr)
    deliver(app, SALES, SUBJECT, BODY)

    # The message is sealed to the group's key: bob's own key does not open it.
    bob_key = own_private_key(bob, app)
    listed = api(bob, app, "/api/groups/sales/store?prefix=Mail/In_Json/").json()["objects"]
    assert len(listed) == 1
    sealed = api(bob, app, "/api/groups/sales/store/" + listed[0]["path"]).body()
    with pytest.raises(CryptoError):
        open_mail_object(bob_key, sealed)
    own_before = own_objects(bob, app, "Cache/") + own_objects(bob, app, "Mail/")

    # Check for new mail shows the group; Groups, sales opens its mailbox and the message decrypts in the page.
    check_mail(bob)
    wait_until(bob, lambda: bob.locator("#group-links [data-group=sales]").count() == 1)
    assert bob.locator("#groups-nav").is_visible()
    open_sales(bob)
    assert bob.locator("#key-alarm").is_hidden()
    assert bob.inner_text("#list-title") == SALES
    wait_until(bob, lambda: row(bob, SUBJECT).count() == 1)
    assert bob.locator("#list .row").count() == 1
    row(bob, SUBJECT).first.click()
    subject = bob.locator("#reader-subject")
    wait_until(bob, lambda: subject.count() == 1 and subject.inner_text() == SUBJECT)
    wait_until(bob, lambda: BODY in bob.inner_text("#reader"))
    assert "carol@remote.test" in bob.inner_text("#reader")
    toolbar = bob.locator("#reader [role=toolbar] button")
    labels = [toolbar.nth(i).inner_text() for i in range(toolbar.count())]
    assert "Reply" in labels and not {"Delete", "This is spam", "Not spam", "Restore"} & set(labels), labels
    folder = os.environ.get("MV_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        bob.screenshot(path=str(Path(folder) / "group-mail.png"))

    # The group's mailbox is kept in memory: bob's own store (cache and mail) is untouched; his Inbox is his own.
    assert own_objects(bob, app, "Cache/") + own_objects(bob, app, "Mail/") == own_before
    bob.click("#folders [data-folder=inbox]")
    wait_until(bob, lambda: bob.inner_text("#list-title") == "Inbox")
    assert row(bob, SUBJECT).count() == 0 and bob.locator("#reader").is_hidden()
    assert bob.locator("#group-notice").is_hidden()

    # The server wraps to bob a group key it made itself (under the current key id): it opens with bob's key, but
    # it is not the key the directory publishes for sales@, so nothing is opened and the alarm goes up.
    account = api(bob, app, "/api/account").json()
    bob_public = load_der_public_key(base64.b64decode(account["public_key"]))
    assert isinstance(bob_public, rsa.RSAPublicKey)
    impostor = generate_private_key(2048)
    wrapped = base64.b64encode(seal_mail_object("v2", bob_public, private_key_der(impostor))).decode("ascii")

    def swapped_key(route: Any) -> None:
        answer = route.fetch().json()
        answer["keys"] = [{"key_id": answer["key_id"], "wrapped": wrapped}]
        route.fulfill(status=200, content_type="application/json", body=json.dumps(answer))

    bob.route(GROUP_ANSWER, swapped_key)
    open_sales(bob)
    wait_until(bob, lambda: "not the key the directory publishes" in bob.inner_text("#key-alarm"))
    assert bob.locator("#key-alarm").is_visible()
    assert "failed verification" in bob.inner_text("#group-notice")
    assert bob.locator("#list .row").count() == 0 and bob.locator("#reader").is_hidden()
    bob.unroute(GROUP_ANSWER, swapped_key)

    # The server names another key as the group's current one: refused likewise.
    def other_key_id(route: Any) -> None:
        answer = route.fetch().json()
        answer["key_id"] = str(uuid.uuid4())
        route.fulfill(status=200, content_type="application/json", body=json.dumps(answer))

    bob.route(GROUP_ANSWER, other_key_id)
    open_sales(bob)
    wait_until(bob, lambda: "is not the group's current key" in bob.inner_text("#key-alarm"))
    assert bob.locator("#list .row").count() == 0
    bob.unroute(GROUP_ANSWER, other_key_id)

    # The real answer again: the mailbox opens (the alarm stays up until the page is left, as for own keys).
    open_sales(bob)
    wait_until(bob, lambda: row(bob, SUBJECT).count() == 1)
    assert bob.locator("#group-notice").is_hidden()

    # alice, the group's other member, reads it too.
    check_mail(alice)
    wait_until(alice, lambda: alice.locator("#group-links [data-group=sales]").count() == 1)
    open_sales(alice)
    wait_until(alice, lambda: row(alice, SUBJECT).count() == 1)
    row(alice, SUBJECT).first.click()
    wait_until(alice, lambda: BODY in alice.inner_text("#reader"))
    assert alice.locator("#key-alarm").is_hidden()
    for page in (alice, bob):
        page.context.close()
