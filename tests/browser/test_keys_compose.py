"""The recipients' keys at send time in the web client (issue 20) in Debian's Chromium against a real twistd: before
``POST /api/send`` the composer looks up the key of every recipient on the account's own domains and verifies the
directory's answer against the transparency log (record signature, inclusion proof, tree head signed by the pinned
log key, consistency), as the Python client's ``e2e.check_local_keys`` does. alice writes to bob (published key, checked
once although named three times), carol (no key published: not_found is fine) and a remote address (not looked
up): delivered. A directory that then answers bob's address with a key an attacker made (in a tree head signed by
another Ed25519 key, or in the real signed head without a valid inclusion proof) gets the send refused with
"Not sent: the key of bob@example.org failed verification (...)" in the composer and the red key banner raised;
nothing reaches bob, and once the directory answers honestly again the same draft goes out."""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mailiverse.keylog import merkle, sth
from mailiverse.keylog.records import canonical_json, fingerprint, key_record_fields, sign_key_record
from tests.support.browser import (
    PASSWORD,
    check_mail,
    login,
    new_page,
    require_chromium,
    row,
    wait_synced,
    wait_until,
)
from tests.support.harness import DOMAIN, Appliance, stored

pytestmark = pytest.mark.integration

ALICE = f"alice@{DOMAIN}"
BOB = f"bob@{DOMAIN}"
CAROL = f"carol@{DOMAIN}"
REMOTE = "friend@remote.test"
BOB_KEYS = re.compile(r".*/api/keys/" + re.escape(BOB) + "$")
DANGER = "rgb(179, 20, 27)"


@pytest.fixture(scope="module")
def appliance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:
    """A running appliance without open sign-up: the first account signs up freely, the next one with an invite."""
    require_chromium()
    app = Appliance(tmp_path_factory.mktemp("compose-keys") / "appliance")
    app.start()
    try:
        yield app
    finally:
        app.stop()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def keys_checked(page: Any) -> int:
    return int(page.locator("body").get_attribute("data-keys-checked") or 0)


def signup_with(page: Any, name: str, invite: str | None = None) -> None:
    """Sign up through the form; the client logs in and its login-time watch publishes the account's key."""
    page.click("#tab-signup")
    page.fill("#signup-user", name)
    page.fill("#signup-password", PASSWORD)
    page.fill("#signup-password2", PASSWORD)
    if invite is not None:
        page.fill("#signup-invite", invite)
    page.click("#signup-form button[type=submit]")
    page.wait_for_selector("#app:not([hidden])", timeout=180_000)
    wait_synced(page, 1)
    wait_until(page, lambda: keys_checked(page) >= 1, 120.0)


def inbox(app: Appliance, user: str) -> int:
    """How many messages wait in ``user``'s Inbox on the server."""
    return len(stored(app, user, "Mail/In/"))


def attacker_answer(address: str) -> dict[str, Any]:
    """A /api/keys answer of the server's shape: a record for ``address`` signed by a key its owner never made,
    the only leaf of a tree whose head another Ed25519 key (not the appliance's log key) signed."""
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    record = sign_key_record(
        key_record_fields(attacker.public_key(), [address], created_ms=int(time.time() * 1000)), attacker
    )
    leaf = canonical_json(record)
    head = sth.TreeHead(tree_size=1, root_hash=merkle.leaf_hash(leaf), timestamp=int(time.time() * 1000))
    return {
        "address": address,
        "record": record,
        "leaf": b64(leaf),
        "leaf_index": 0,
        "tree_size": 1,
        "audit_path": [],
        "sth": sth.to_json(head, sth.sign(head, Ed25519PrivateKey.generate())),
        "key_id": record["key_id"],
        "public_key": record["public_key"],
        "fingerprint": fingerprint(base64.b64decode(record["public_key"])),
        "bits": record["bits"],
        "format": record["format"],
        "history": [],
        "policy": None,
    }


class Traffic:
    """The page's key look-ups and sends, as the browser made them (routed or not)."""

    def __init__(self, page: Any) -> None:
        self.seen: list[tuple[str, str]] = []
        page.on("request", lambda request: self.seen.append((request.method, request.url)))

    def mark(self) -> int:
        return len(self.seen)

    def lookups(self, since: int) -> list[str]:
        return [url.rpartition("/api/keys/")[2] for method, url in self.seen[since:] if "/api/keys/" in url]

    def sends(self, since: int) -> int:
        return sum(1 for method, url in self.seen[since:] if method == "POST" and url.endswith("/api/send"))


def compose(page: Any, to: str, subject: str, cc: str = "", bcc: str = "") -> None:
    page.click("#compose-button")
    page.wait_for_selector("#compose[open]")
    page.fill("#compose-to", to)
    page.fill("#compose-cc", cc)
    page.fill("#compose-bcc", bcc)
    page.fill("#compose-subject", subject)
    page.fill("#compose-text", f"{subject}: the body.")


def send(page: Any) -> None:
    """Press Send and wait for the composer to close (failing with what it says when it does not); carol has no key,
    so the composer first says the message goes as ordinary mail, and the second press sends it."""
    page.click("#send-button")
    say = page.locator("#compose-status")
    wait_until(
        page, lambda: say.inner_text().startswith("Not end-to-end") or page.locator("#compose[open]").count() == 0
    )
    if page.locator("#compose[open]").count():
        page.click("#send-button")
    dialog = page.locator("#compose[open]")
    wait_until(page, lambda: dialog.count() == 0 or "error" in (say.get_attribute("class") or ""))
    assert dialog.count() == 0, say.inner_text()


def refused(page: Any, reason: str) -> None:
    """Press Send and see the refusal in the composer, which stays open, and the red banner."""
    page.click("#send-button")
    say = page.locator("#compose-status")
    wait_until(page, lambda: say.inner_text().startswith("Not sent"), 60.0)
    assert say.inner_text() == f"Not sent: the key of {BOB} failed verification ({reason})"
    assert "error" in (say.get_attribute("class") or "").split()
    assert page.locator("#compose[open]").count() == 1
    assert page.locator("#send-button").is_enabled()
    banner = page.locator("#key-alarm")
    assert banner.is_visible()
    assert banner.evaluate("el => getComputedStyle(el).backgroundColor") == DANGER
    assert f"The key directory's answer for {BOB} failed verification: {reason}" in banner.inner_text()


def test_send_checks_local_recipients_keys(browser: Any, appliance: Appliance) -> None:
    """Verified keys: sent (one look-up per local address, none for remote ones); an attacker's key for bob in
    either kind of forged answer: refused in the composer with the banner, nothing delivered; honest again: sent."""
    page = new_page(browser, appliance)
    signup_with(page, "alice")
    invite = appliance.admin("invite", "create").stdout.decode().strip()
    other = new_page(browser, appliance)
    signup_with(other, "bob", invite)
    assert other.locator("#key-alarm").is_hidden()
    other.context.close()
    appliance.add_user("carol")  # a local user whose key no client published: the directory says not_found
    assert page.locator("#key-alarm").is_hidden()
    traffic = Traffic(page)

    # Verified: bob named three times (checked once), carol without a key, a remote address not looked up; the
    # keys pass, so the message goes to the server, which (no outbound mail here) refuses the remote address.
    mark = traffic.mark()
    compose(page, f"{BOB}, {CAROL}", "Delivered", cc="Bob@Example.ORG", bcc=f"{REMOTE}, {BOB}")
    page.click("#send-button")
    say = page.locator("#compose-status")
    # Every key is looked up and verified in the page (RSA in JavaScript): slow on a loaded 2-core machine.
    wait_until(page, lambda: say.inner_text().startswith("Not end-to-end"), 180.0)
    assert traffic.sends(mark) == 0
    page.click("#send-button")
    wait_until(page, lambda: say.inner_text() == "this appliance does not send mail to other domains")
    assert set(traffic.lookups(mark)) == {BOB, CAROL}  # judged as typed (the lock line), then at Send
    assert traffic.sends(mark) == 1
    assert page.locator("#key-alarm").is_hidden()

    mark = traffic.mark()
    page.fill("#compose-bcc", BOB)
    started = time.monotonic()
    send(page)
    sent_in = time.monotonic() - started
    assert sorted(traffic.lookups(mark)) == [BOB, CAROL]
    assert traffic.sends(mark) == 1
    wait_until(page, lambda: inbox(appliance, "bob") == 1 and inbox(appliance, "carol") == 1)
    assert page.locator("#key-alarm").is_hidden()
    print(f"send with 2 local recipients' keys checked: {sent_in * 1000:.0f} ms")

    # A record for bob's address that an attacker made, in a tree head the pinned log key did not sign.
    forged = attacker_answer(BOB)
    page.route(
        BOB_KEYS, lambda route: route.fulfill(status=200, content_type="application/json", body=json.dumps(forged))
    )
    mark = traffic.mark()
    compose(page, BOB, "Held back", cc=BOB.upper(), bcc=CAROL)
    refused(page, "the signed tree head does not verify with the pinned log key")
    assert set(traffic.lookups(mark)) == {BOB, CAROL}  # judged as typed (the lock line), then at Send
    assert traffic.sends(mark) == 0
    page.unroute(BOB_KEYS)

    # The attacker's record in the real log's signed head: the inclusion proof does not reach the signed root.
    def swapped(route: Any) -> None:
        answer = route.fetch().json()
        attacker = attacker_answer(BOB)
        for name in ("record", "leaf", "key_id", "public_key", "fingerprint"):
            answer[name] = attacker[name]
        route.fulfill(status=200, content_type="application/json", body=json.dumps(answer))

    page.route(BOB_KEYS, swapped)
    mark = traffic.mark()
    refused(page, "the inclusion proof does not lead to the signed root")
    assert traffic.lookups(mark) and traffic.sends(mark) == 0
    page.unroute(BOB_KEYS)
    # Nothing reached bob or carol.
    page.wait_for_timeout(500)
    assert inbox(appliance, "bob") == 1 and inbox(appliance, "carol") == 1

    # The directory honest again: the same draft goes out.
    mark = traffic.mark()
    send(page)
    assert traffic.sends(mark) == 1
    wait_until(page, lambda: inbox(appliance, "bob") == 2 and inbox(appliance, "carol") == 2)
    page.context.close()

    # bob reads his mail in the browser: the first message and the held-back draft once, after the directory was
    # honest again; the two refused attempts never came.
    reader = new_page(browser, appliance)
    login(reader, "bob")
    check_mail(reader)
    wait_until(reader, lambda: row(reader, "Delivered").count() == 1 and row(reader, "Held back").count() == 1)
    assert reader.locator("#list .row").count() == 2
    reader.context.close()
