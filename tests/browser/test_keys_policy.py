"""Domain policies in the web client (issue 20) in Debian's Chromium against a real twistd: two people of
example.org sign up in the browser (the second with an invite) and publish their keys; ``mailiverse-admin domain
policy example.org organisation --officer bob@example.org`` appends a policy entry signed by the log key; at the
next login both see, above the mailbox, that bob can also read mail to example.org (an informational notice, not
the red alarm), and the Keys page shows the policy, its officers and its log entry; the browser keeps the entry it
saw in Settings/keylog in the Python client's shape ("policies": {domain: seq}). Back to ``personal``: a fresh
login shows no notice and the Keys page says personal (entry 2). A directory that then drops the policy from its
answer, or serves the older organisation entry (a valid proof in the same signed head), raises the red banner.

Set ``MV_SCREENSHOTS=docs/screenshots`` to refresh the picture of the Keys page with the policy (keys-policy.png).
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mailiverse.compat.blocks import decrypt_key_block
from mailiverse.crypto.formats import open_mail_object
from mailiverse.crypto.kdf import derive_keys, parse_kdf
from mailiverse.crypto.keys import load_private_key
from mailiverse.keylog import merkle
from mailiverse.keylog.records import address_hash, parse_leaf
from tests.support.browser import PASSWORD, base_url, login, new_page, require_chromium, wait_synced, wait_until
from tests.support.harness import DOMAIN, Appliance

pytestmark = pytest.mark.integration

ALICE = f"alice@{DOMAIN}"
BOB = f"bob@{DOMAIN}"
SET = re.compile(
    r"^(?P<domain>\S+): (?P<policy>\w+) \(entry (?P<seq>\d+), log leaf (?P<leaf>\d+)\)(?:; key (?P<key>\S+),)?"
)
DANGER = "rgb(179, 20, 27)"


@pytest.fixture(scope="module")
def appliance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:
    """A running appliance without open sign-up: the first account signs up freely, the next one with an invite."""
    require_chromium()
    app = Appliance(tmp_path_factory.mktemp("policy") / "appliance")
    app.start()
    try:
        yield app
    finally:
        app.stop()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def api_json(page: Any, app: Appliance, path: str) -> dict[str, Any]:
    """GET ``path`` with the page's session (the real server's answer, never a routed one)."""
    response = page.context.request.get(base_url(app) + path)
    assert response.ok, (path, response.status, response.text())
    answer: dict[str, Any] = response.json()
    return answer


def keys_checked(page: Any) -> int:
    return int(page.locator("body").get_attribute("data-keys-checked") or 0)


def signup_with(page: Any, name: str, invite: str | None = None) -> None:
    """Sign up through the form (with an invite code when given); the client logs in and checks its keys."""
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


def fresh_login(browser: Any, app: Appliance, name: str) -> Any:
    """A new context, logged in, its login-time key check done."""
    page = new_page(browser, app)
    login(page, name)
    wait_until(page, lambda: keys_checked(page) >= 1, 120.0)
    return page


def open_keys(page: Any) -> None:
    page.click("#keys-link")
    page.wait_for_selector("#keys-page:not([hidden])")
    wait_until(page, lambda: "verified" in (page.get_attribute("#key-proof", "class") or "").split(), 120.0)


def check_again(page: Any) -> None:
    before = keys_checked(page)
    page.click("#key-check")
    wait_until(page, lambda: keys_checked(page) > before, 120.0)


def set_policy(app: Appliance, *args: str) -> dict[str, str]:
    """Run ``mailiverse-admin domain policy`` and read what it appended (policy, seq, leaf, key)."""
    out = app.admin("domain", "policy", DOMAIN, *args).stdout.decode().strip()
    found = SET.match(out)
    assert found, out
    return {k: v for k, v in found.groupdict().items() if v is not None}


def saved_policies(page: Any, app: Appliance) -> dict[str, int]:
    """The "policies" member of Settings/keylog, opened as the Python client opens it (key block, own key)."""
    account = api_json(page, app, "/api/account")
    crypto, _verification = derive_keys(PASSWORD, parse_kdf(account["kdf"]))
    env = decrypt_key_block(crypto, base64.b64decode(account["key_block"]))
    key = load_private_key(base64.b64decode(env["RSA-PrivateKey"]))
    response = page.context.request.get(base_url(app) + "/api/store/Settings/keylog")
    assert response.ok, response.status
    state: dict[str, Any] = json.loads(open_mail_object(key, response.body()))
    assert state["v"] == 1 and state["log_key"] and state["sth"]
    policies: dict[str, int] = state.get("policies", {})
    return policies


def screenshots() -> Path | None:
    folder = os.environ.get("MV_SCREENSHOTS")
    return Path(folder) if folder else None


def assert_notice_shows_bob(page: Any) -> None:
    notice = page.locator("#policy-notice")
    wait_until(page, notice.is_visible)
    assert notice.inner_text().strip() == f"Mail to {DOMAIN} can also be read by {BOB} (organisation policy)"
    assert notice.get_attribute("role") == "status"
    # Informational: not the alarm's red, and the alarm stays down.
    assert notice.evaluate("el => getComputedStyle(el).backgroundColor") != DANGER
    assert page.locator("#key-alarm").is_hidden()


def test_domain_policy_notice_keys_row_and_alarms(browser: Any, appliance: Appliance) -> None:
    """Organisation policy: notice at login for both people and the Keys page row; personal again: no notice,
    entry 2; the policy dropped from an answer, or rolled back to entry 1 with a valid proof: the red banner."""
    # Two people of the domain, each logged in once (the login-time watch publishes their keys).
    first = new_page(browser, appliance)
    signup_with(first, "alice")
    assert first.locator("#key-alarm").is_hidden() and first.locator("#policy-notice").is_hidden()
    open_keys(first)
    assert first.inner_text("#key-policy").strip() == f"{DOMAIN}: personal (never changed)"
    assert saved_policies(first, appliance) == {}
    assert api_json(first, appliance, f"/api/keys/{ALICE}")["policy"] is None
    first.context.close()
    invite = appliance.admin("invite", "create").stdout.decode().strip()
    second = new_page(browser, appliance)
    signup_with(second, "bob", invite)
    assert second.locator("#key-alarm").is_hidden()
    assert api_json(second, appliance, f"/api/keys/{BOB}")["record"]["addresses"] == [address_hash(BOB)]
    second.context.close()

    # The organisation policy, bob its officer: a log entry signed by the log key.
    org = set_policy(appliance, "organisation", "--officer", BOB)
    assert org["policy"] == "organisation" and org["seq"] == "1" and org.get("key")

    page = fresh_login(browser, appliance, "alice")
    assert_notice_shows_bob(page)
    served = api_json(page, appliance, f"/api/keys/{ALICE}")["policy"]
    assert served["record"]["policy"] == "organisation" and served["officers"] == [BOB]
    assert served["leaf_index"] == int(org["leaf"])
    # The notice stays above the mailbox while the inbox is shown.
    page.click("#folders [data-folder=inbox]")
    assert page.locator("#policy-notice").is_visible()
    open_keys(page)
    row = page.locator("#key-policy .key-policy-line")
    assert row.count() == 1
    text = row.inner_text()
    assert text.startswith(f"{DOMAIN}: organisation. Mail to {DOMAIN} can also be read by {BOB}")
    assert f"organisation key {org['key']}" in text and f"entry 1, log leaf {org['leaf']}" in text
    assert row.get_attribute("data-policy") == "organisation" and row.get_attribute("data-seq") == "1"
    assert page.locator("#key-alarm").is_hidden()
    # Kept where the Python client keeps it, in its shape.
    assert saved_policies(page, appliance) == {DOMAIN: 1}
    folder = screenshots()
    if folder:
        folder.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(folder / "keys-policy.png"))
    page.context.close()

    # Every client of the domain shows it: bob too.
    officer = fresh_login(browser, appliance, "bob")
    assert_notice_shows_bob(officer)
    officer.context.close()

    # Back to personal: entry 2; a fresh login shows no notice, the Keys page says personal.
    personal = set_policy(appliance, "personal")
    assert personal["policy"] == "personal" and personal["seq"] == "2"
    page = fresh_login(browser, appliance, "alice")
    assert page.locator("#key-alarm").is_hidden()
    assert page.locator("#policy-notice").is_hidden()
    open_keys(page)
    assert page.inner_text("#key-policy").strip() == f"{DOMAIN}: personal (entry 2, log leaf {personal['leaf']})"
    assert saved_policies(page, appliance) == {DOMAIN: 2}

    # A directory that drops the policy from the answer after this account saw one: the red banner.
    own = re.compile(r".*/api/keys/" + re.escape(ALICE) + "$")

    def without_policy(route: Any) -> None:
        answer = route.fetch().json()
        assert answer["policy"]["record"]["seq"] == 2
        del answer["policy"]
        route.fulfill(status=200, content_type="application/json", body=json.dumps(answer))

    page.route(own, without_policy)
    check_again(page)
    banner = page.locator("#key-alarm")
    assert banner.is_visible()
    assert banner.evaluate("el => getComputedStyle(el).backgroundColor") == DANGER
    assert f"The key directory's answer for {ALICE} failed verification" in banner.inner_text()
    assert f"no longer shows the policy of {DOMAIN} this account saw (entry 2)" in banner.inner_text()
    assert "failed" in (page.get_attribute("#key-proof", "class") or "")
    assert page.locator("#policy-notice").is_hidden()
    page.unroute(own)

    # A directory that serves the older organisation entry instead, with a valid inclusion proof in the same
    # signed head (the leaf is still in the log): signed, proven, but it goes back.
    def rolled_back(route: Any) -> None:
        answer = route.fetch().json()
        size = answer["sth"]["tree_size"]
        entries = api_json(page, appliance, f"/api/log/entries?start=0&end={size - 1}")["entries"]
        tree = merkle.MerkleTree()
        for entry in entries:
            tree.append(base64.b64decode(entry["leaf"]))
        index = int(org["leaf"])
        leaf = base64.b64decode(entries[index]["leaf"])
        record = parse_leaf(leaf)
        assert record["type"] == "policy" and record["seq"] == 1
        answer["policy"] = {"record": record, "leaf": b64(leaf), "leaf_index": index, "tree_size": size,
                            "audit_path": [b64(n) for n in tree.inclusion(index)], "officers": [BOB]}  # fmt: skip
        route.fulfill(status=200, content_type="application/json", body=json.dumps(answer))

    page.route(own, rolled_back)
    check_again(page)
    assert f"the policy of {DOMAIN} went back from entry 2 to entry 1" in banner.inner_text()
    page.unroute(own)

    # An answer whose policy names another officer than the log key signed.
    def other_officer(route: Any) -> None:
        answer = route.fetch().json()
        answer["policy"]["officers"] = [f"eve@{DOMAIN}"]
        route.fulfill(status=200, content_type="application/json", body=json.dumps(answer))

    page.route(own, other_officer)
    check_again(page)
    assert "names other officers than it signs" in banner.inner_text()
    page.unroute(own)
    # The saved entry did not move back.
    assert saved_policies(page, appliance) == {DOMAIN: 2}
    page.context.close()
