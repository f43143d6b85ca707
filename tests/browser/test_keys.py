"""The key directory in the web client (issue 20) in Debian's Chromium against a real twistd: the login-time watch
publishes the account's first key record (RSA-PSS, signed in the browser) and verifies it in the transparency log
(inclusion proof, Ed25519 tree head with the pinned log key, consistency with the head saved in Settings/keylog);
the Keys page shows it; "Rotate key" makes a new key pair in the browser, publishes it superseding the old one and
keeps the old private key in the key block, so mail sealed to either key opens, in that page and after a fresh
login; and a forked log (answers routed by the test) raises the red banner, both when its head is not signed by
the pinned log key and when it is signed by the real log key, consistent, with a valid inclusion proof, but
names a key the user did not make.

Set ``MV_SCREENSHOTS=docs/screenshots`` to refresh the picture of the Keys page (keys.png)."""

from __future__ import annotations

import base64
import json
import os
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mailiverse.compat.blocks import decrypt_key_block
from mailiverse.crypto.formats import open_mail_object
from mailiverse.crypto.kdf import derive_keys, parse_kdf
from mailiverse.crypto.keys import load_private_key, public_key_der
from mailiverse.keylog import merkle, sth
from mailiverse.keylog.records import (
    address_hash,
    canonical_json,
    fingerprint,
    key_record_fields,
    sign_key_record,
    verify_key_record,
)
from tests.support.browser import (
    PASSWORD,
    base_url,
    check_mail,
    login,
    new_page,
    row,
    signup,
    smtp_send,
    text_mail,
    wait_until,
)
from tests.support.harness import DOMAIN, Appliance

pytestmark = pytest.mark.integration

USER = "kira"
ADDRESS = f"{USER}@{DOMAIN}"
RETIRED = "RSA-RetiredPrivateKeys"
CONSISTENCY = re.compile(r".*/api/log/consistency\?.*")


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


def open_keys(page: Any) -> None:
    page.click("#keys-link")
    page.wait_for_selector("#keys-page:not([hidden])")
    wait_until(page, lambda: page.get_attribute("#keys-link", "aria-current") == "page")


def wait_verified(page: Any) -> None:
    wait_until(page, lambda: "verified" in (page.get_attribute("#key-proof", "class") or "").split(), 120.0)


def check_again(page: Any) -> None:
    before = keys_checked(page)
    page.click("#key-check")
    wait_until(page, lambda: keys_checked(page) > before, 120.0)


def open_message(page: Any, subject: str, body: str) -> None:
    """Open a message from the list and see its text: it was decrypted in the browser."""
    page.click("#folders [data-folder=inbox]")
    wait_until(page, lambda: row(page, subject).count() == 1)
    row(page, subject).first.click()
    wait_until(page, lambda: page.locator("#reader-subject").count() == 1
               and page.inner_text("#reader-subject") == subject)  # fmt: skip
    wait_until(page, lambda: body in page.inner_text("#reader"))


def environment(page: Any, app: Appliance) -> dict[str, str]:
    """The account's key block, opened here with the password (what the browser wrote to the server)."""
    account = api_json(page, app, "/api/account")
    crypto, _verification = derive_keys(PASSWORD, parse_kdf(account["kdf"]))
    return decrypt_key_block(crypto, base64.b64decode(account["key_block"]))


def saved_state(page: Any, app: Appliance, key: rsa.RSAPrivateKey) -> dict[str, Any]:
    """Settings/keylog opened with the account's current private key, as the Python client opens it."""
    response = page.context.request.get(base_url(app) + "/api/store/Settings/keylog")
    assert response.ok, response.status
    state: dict[str, Any] = json.loads(open_mail_object(key, response.body()))
    return state


def log_private_key(app: Appliance) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key((app.data_dir / "keys" / "log.key.pem").read_bytes(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    return key


def forged_answer(
    record: dict[str, Any], leaf_index: int, tree_size: int, path: list[bytes], head: dict[str, object]
) -> dict[str, Any]:
    """A /api/keys answer of the server's shape for ``record``."""
    der = base64.b64decode(record["public_key"])
    return {
        "address": ADDRESS,
        "record": record,
        "leaf": b64(canonical_json(record)),
        "leaf_index": leaf_index,
        "tree_size": tree_size,
        "audit_path": [b64(node) for node in path],
        "sth": head,
        "key_id": record["key_id"],
        "public_key": record["public_key"],
        "fingerprint": fingerprint(der),
        "bits": record["bits"],
        "format": record["format"],
        "history": [],
    }


def attacker_record() -> dict[str, Any]:
    """A well-formed key record for ``ADDRESS``, correctly signed by its own key: a key the user never made."""
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    fields = key_record_fields(attacker.public_key(), [ADDRESS], created_ms=int(time.time() * 1000))
    return sign_key_record(fields, attacker)


def screenshots() -> Path | None:
    folder = os.environ.get("MV_SCREENSHOTS")
    return Path(folder) if folder else None


def test_keys_page_rotation_and_forked_log(browser: Any, appliance: Appliance) -> None:
    """First record published and proven at sign-up's login; mail before and after an in-browser rotation both
    open (in the page, and after a new login from the key block); the log shows the old key superseded; a
    forked log raises the banner whether or not its heads carry the log key's signature."""
    page = new_page(browser, appliance)
    signup(page, USER)
    wait_until(page, lambda: keys_checked(page) >= 1, 120.0)
    assert page.locator("#key-alarm").is_hidden()

    # The first record: published by the browser, proven, the same key the account holds.
    open_keys(page)
    wait_verified(page)
    account = api_json(page, appliance, "/api/account")
    first = api_json(page, appliance, f"/api/keys/{ADDRESS}")
    record = verify_key_record(first["record"])
    assert record.public_key == base64.b64decode(account["public_key"])
    assert record.status == "current" and record.supersedes is None and record.serves(ADDRESS)
    assert first["history"] == []
    first_id = record.key_id
    assert page.inner_text("#key-id") == first_id
    assert page.inner_text("#key-fingerprint").replace(" ", "") == account["fingerprint"]
    size = first["sth"]["tree_size"]
    assert f"tree of {size} " in page.inner_text("#key-proof")
    assert page.locator("#key-history li").count() == 0 and page.locator("#key-history-empty").is_visible()

    # Settings/keylog: sealed to the account's key, the pinned log key and a head the log key signed.
    env = environment(page, appliance)
    old_private = load_private_key(base64.b64decode(env["RSA-PrivateKey"]))
    state = saved_state(page, appliance, old_private)
    log_key = api_json(page, appliance, "/api/log/key")
    assert state["v"] == 1 and state["log_key"] == log_key["public_key"]
    head, signature = sth.from_json(state["sth"])
    assert sth.verify(head, signature, log_private_key(appliance).public_key())
    assert head.tree_size == size == 1 and head.root_hash == merkle.leaf_hash(base64.b64decode(first["leaf"]))

    # Mail sealed to the first key.
    smtp_send(appliance, ADDRESS, text_mail(USER, "Before the rotation", "sealed to the first key"))
    page.click("#folders [data-folder=inbox]")
    check_mail(page)
    open_message(page, "Before the rotation", "sealed to the first key")

    # Rotate in the browser.
    open_keys(page)
    page.click("#key-rotate")
    wait_until(page, lambda: "published" in page.inner_text("#key-status"), 180.0)
    assert "error" not in (page.get_attribute("#key-status", "class") or "")
    wait_verified(page)
    second_id = page.inner_text("#key-id")
    assert second_id != first_id and first_id in page.inner_text("#key-status")
    rotated = api_json(page, appliance, f"/api/keys/{ADDRESS}")
    new_record = verify_key_record(rotated["record"])
    assert new_record.key_id == second_id and new_record.supersedes == first_id and new_record.status == "current"
    [old_entry] = rotated["history"]
    old_record = verify_key_record(old_entry["record"])
    assert old_record.key_id == first_id and old_record.status == "superseded" and old_record.retired_ms
    assert old_record.public_key == record.public_key
    account = api_json(page, appliance, "/api/account")
    assert base64.b64decode(account["public_key"]) == new_record.public_key
    history = page.locator("#key-history li")
    assert history.count() == 1
    assert history.first.get_attribute("data-key-id") == first_id
    assert "superseded" in history.first.inner_text()

    # The new key block: the new key current, the old one first among the retired keys.
    env = environment(page, appliance)
    new_private = load_private_key(base64.b64decode(env["RSA-PrivateKey"]))
    assert public_key_der(new_private) == new_record.public_key
    assert base64.b64decode(env["RSA-PublicKey"]) == new_record.public_key
    retired = json.loads(env[RETIRED])
    assert len(retired) == 1
    assert public_key_der(load_private_key(base64.b64decode(retired[0]))) == record.public_key
    # The saved head moved on and is now sealed to the new key.
    state = saved_state(page, appliance, new_private)
    assert state["sth"] == rotated["sth"] and rotated["sth"]["tree_size"] == 3

    # Mail after the rotation is sealed to the new key; both messages open in this page.
    smtp_send(appliance, ADDRESS, text_mail(USER, "After the rotation", "sealed to the second key"))
    check_mail(page)
    open_message(page, "After the rotation", "sealed to the second key")
    open_message(page, "Before the rotation", "sealed to the first key")

    # A fresh login reads the retired key from the key block: both still open, the page verifies, no alarm.
    again = new_page(browser, appliance)
    login(again, USER)
    wait_until(again, lambda: keys_checked(again) >= 1, 120.0)
    open_message(again, "Before the rotation", "sealed to the first key")
    open_message(again, "After the rotation", "sealed to the second key")
    open_keys(again)
    wait_verified(again)
    assert again.inner_text("#key-id") == second_id
    assert again.locator("#key-history li").first.get_attribute("data-key-id") == first_id
    assert again.locator("#key-alarm").is_hidden()
    folder = screenshots()
    if folder:
        folder.mkdir(parents=True, exist_ok=True)
        again.screenshot(path=str(folder / "keys.png"))
    again.context.close()

    # A fork without the log key: a one-leaf tree whose head another Ed25519 key signed.
    stranger = attacker_record()
    leaf = canonical_json(stranger)
    fake_head = sth.TreeHead(tree_size=1, root_hash=merkle.leaf_hash(leaf), timestamp=int(time.time() * 1000))
    fake_sig = sth.sign(fake_head, Ed25519PrivateKey.generate())
    unsigned_fork = forged_answer(stranger, 0, 1, [], sth.to_json(fake_head, fake_sig))
    own = re.compile(r".*/api/keys/" + re.escape(ADDRESS) + "$")
    page.route(own, lambda route: route.fulfill(status=200, content_type="application/json",
                                                body=json.dumps(unsigned_fork)))  # fmt: skip
    open_keys(page)
    check_again(page)
    banner = page.locator("#key-alarm")
    assert banner.is_visible()
    assert f"The key directory's answer for {ADDRESS} failed verification" in banner.inner_text()
    assert "pinned log key" in banner.inner_text()
    assert "failed" in (page.get_attribute("#key-proof", "class") or "")
    page.unroute(own)

    # Forks the log key signed (the server's key stolen, or the server lying), served with consistency proofs
    # from the forked tree. The account saved the head of the real log's first leaves.
    saved, _sig = sth.from_json(saved_state(page, appliance, new_private)["sth"])
    real = [
        base64.b64decode(e["leaf"])
        for e in api_json(page, appliance, f"/api/log/entries?start=0&end={saved.tree_size - 1}")["entries"]
    ]
    log_key_private = log_private_key(appliance)
    asked: list[tuple[int, int]] = []

    def serve_fork(leaves: list[bytes], index: int) -> dict[str, Any]:
        """Route the own address and the consistency proofs to a tree of ``leaves`` the log key signed."""
        tree = merkle.MerkleTree()
        for leaf in leaves:
            tree.append(leaf)
        head = sth.TreeHead(tree_size=tree.size, root_hash=tree.root_at(tree.size), timestamp=int(time.time() * 1000))
        head_json = sth.to_json(head, sth.sign(head, log_key_private))
        record: dict[str, Any] = json.loads(leaves[index])
        answer = forged_answer(record, index, tree.size, tree.inclusion(index), head_json)
        assert merkle.verify_inclusion(merkle.leaf_hash(leaves[index]), index, tree.size, tree.inclusion(index),
                                       head.root_hash)  # fmt: skip

        def consistency(route: Any) -> None:
            query = parse_qs(urlparse(route.request.url).query)
            first_size, second_size = int(query["first"][0]), int(query["second"][0])
            asked.append((first_size, second_size))
            proof = [b64(node) for node in tree.consistency(first_size, second_size)]
            body = {"first": first_size, "second": second_size, "consistency": proof, "sth": head_json}
            route.fulfill(status=200, content_type="application/json", body=json.dumps(body))

        page.unroute(own)
        page.unroute(CONSISTENCY)
        page.route(own, lambda route: route.fulfill(status=200, content_type="application/json",
                                                    body=json.dumps(answer)))  # fmt: skip
        page.route(CONSISTENCY, consistency)
        return record

    # A split view: a tree that does not extend the one this account saw (the attacker's leaf first). Signed
    # and with a valid inclusion proof, but the consistency proof from the saved head fails.
    serve_fork([canonical_json(attacker_record()), *real], 0)
    check_again(page)
    assert "is not an extension of the one of" in banner.inner_text() and "the log forked" in banner.inner_text()
    assert asked == [(saved.tree_size, saved.tree_size + 1)]
    assert "A key you did not make" not in banner.inner_text()

    # The real leaves plus the attacker's record: a consistent extension of the saved head, every proof verifies;
    # only the owner's watch sees that the key is not theirs.
    stranger = serve_fork([*real, canonical_json(attacker_record())], len(real))
    check_again(page)
    text = banner.inner_text()
    assert f"A key you did not make is published for {ADDRESS}" in text
    assert stranger["key_id"] in text
    assert asked[1:] == [(saved.tree_size, saved.tree_size + 1)]
    assert address_hash(ADDRESS) in stranger["addresses"]
    # The banner is red and stays on top of the mailbox.
    page.click("#folders [data-folder=inbox]")
    assert banner.is_visible()
    assert banner.evaluate("el => getComputedStyle(el).backgroundColor") == "rgb(179, 20, 27)"
    page.context.close()


PROOFS_JS = """async (cases) => {
  const m = await import('/js/crypto/keylog.js');
  const { fromB64, toB64 } = await import('/js/crypto/bytes.js');
  const out = { inclusion: 0, consistency: 0, wrong: [] };
  const nodes = (list) => list.map(fromB64);
  for (const c of cases.inclusion) {
    const root = fromB64(c.root);
    const ok = await m.verifyInclusion(fromB64(c.leaf_hash), c.index, c.size, nodes(c.proof), root);
    const bad = root.slice();
    bad[0] ^= 1;
    const forged = await m.verifyInclusion(fromB64(c.leaf_hash), c.index, c.size, nodes(c.proof), bad);
    const shifted = await m.verifyInclusion(fromB64(c.leaf_hash), c.index + 1, c.size, nodes(c.proof), root);
    if (ok && !forged && !shifted) out.inclusion++;
    else out.wrong.push(['inclusion', c.index, c.size]);
  }
  for (const c of cases.consistency) {
    const first = fromB64(c.first_root);
    const second = fromB64(c.second_root);
    const ok = await m.verifyConsistency(c.first, c.second, first, second, nodes(c.proof));
    const bad = second.slice();
    bad[31] ^= 1;
    const forged = await m.verifyConsistency(c.first, c.second, first, bad, nodes(c.proof));
    if (ok && !forged) out.consistency++;
    else out.wrong.push(['consistency', c.first, c.second]);
  }
  out.canonical = toB64(m.canonicalJson(cases.value));
  out.address = await m.addressHash(cases.address);
  out.leaf = toB64(await m.leafHash(new TextEncoder().encode('leaf 7')));
  return out;
}"""


def test_proofs_and_encodings_match_the_servers_python(browser: Any, appliance: Appliance) -> None:
    """The browser's RFC 9162 checks accept every inclusion and consistency proof of mailiverse/keylog/merkle.py for
    trees of 1 to 33 leaves and refuse each with a flipped root (or a shifted index); canonical JSON (non-ASCII,
    control characters, quotes, key order) and address hashes are byte for byte the Python ones."""
    leaves = [f"leaf {i}".encode() for i in range(33)]
    tree = merkle.MerkleTree()
    inclusion: list[dict[str, Any]] = []
    consistency: list[dict[str, Any]] = []
    for leaf in leaves:
        tree.append(leaf)
        size = tree.size
        root = tree.root_at(size)
        for index in range(size):
            proof = [b64(n) for n in tree.inclusion(index, size)]
            inclusion.append({"leaf_hash": b64(merkle.leaf_hash(leaves[index])), "index": index, "size": size,
                              "proof": proof, "root": b64(root)})  # fmt: skip
        for first in range(1, size + 1):
            proof = [b64(n) for n in tree.consistency(first, size)]
            consistency.append({"first": first, "second": size, "first_root": b64(tree.root_at(first)),
                                "second_root": b64(root), "proof": proof})  # fmt: skip
    value = {"z": [1, None, True, 'ü/\u2028"\\\n\t\x01 😀'], "A": {"é": -5, "b": ""}, "a": 2**53 - 1}
    page = new_page(browser, appliance)
    out = page.evaluate(PROOFS_JS, {"inclusion": inclusion, "consistency": consistency, "value": value,
                                    "address": " Kira@Example.ORG "})  # fmt: skip
    page.context.close()
    assert out["wrong"] == []
    assert out["inclusion"] == len(inclusion) == 33 * 34 // 2
    assert out["consistency"] == len(consistency)
    assert base64.b64decode(out["canonical"]) == canonical_json(value)
    assert out["address"] == address_hash(" Kira@Example.ORG ") == address_hash(ADDRESS)
    assert base64.b64decode(out["leaf"]) == merkle.leaf_hash(b"leaf 7")
