"""End to end in the web client (docs/e2e.md) in Debian's Chromium against a real twistd: the page builds the
message, its JSON twin and the e2e signature, seals them to the verified directory keys and uploads only ciphertext.

In the page alone: the twin of what ``mail/compose.js`` builds (QP and base64 bodies, RFC 2047 subjects, folded
lists, attachments of every media type, stamps) is ``jsonout.dumps(convert_document(raw, safe_html=True))`` byte
for byte; the signature verifies with ``cryptography`` (RSA-PSS, MGF1-SHA-256, salt 32); v1 and v2 objects open
with ``formats.open_mail_object``; the Hashcash stamps pass ``hashcash.check``.

Two users on one appliance: alice composes to bob (the lock line says end-to-end), the request goes to
``/api/send/sealed`` and never to ``/api/send``, bob's and alice's stored objects are the bytes the request carried,
bob's twin is convert_document of the original plus the e2e member, and bob reads it in Chromium with "End-to-end
encrypted · signed by alice@example.org"; a copy whose signature was tampered with shows "signature not verified".
A recipient without an appliance: the composer says so first and sends ordinary mail only at the second press of
Send; a forged key for bob: refused with the red banner.

Two appliances (tests/support/federation.py): alice@a.example's page seals to bob@b.example with the key b.example's
directory gave through a.example, the carrier crosses over SMTP, and bob's page verifies alice's signature through
b.example; each page pinned the other's log key in Settings/keylog, which the Python client reads.

Set ``MV_SCREENSHOTS=docs/screenshots`` to refresh the pictures of the lock line and the badge (compose-e2e.png,
reader-e2e.png)."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key
from sqlalchemy import create_engine

from mailiverse import hashcash
from mailiverse.client.api import Client
from mailiverse.client.keys import load_state
from mailiverse.client.transport import HttpsTransport
from mailiverse.crypto import formats
from mailiverse.crypto.errors import DecryptionError
from mailiverse.crypto.keys import generate_private_key, private_key_der, public_key_der
from mailiverse.mime import jsonout
from mailiverse.mime.twin import convert_document
from mailiverse.store.objects import put_object_txn, read_object_txn
from mailiverse.store.users import get_user_txn
from tests.support.browser import (
    PASSWORD,
    base_url,
    check_mail,
    login,
    new_page,
    require_chromium,
    row,
    wait_synced,
    wait_until,
)
from tests.support.federation import Federation, Peer, federation
from tests.support.harness import DOMAIN, Appliance, self_signed_cert, stored

pytestmark = pytest.mark.integration

ALICE = f"alice@{DOMAIN}"
BOB = f"bob@{DOMAIN}"
NOWHERE = "friend@remote.test"
SIGNED_PREFIX = b"mailiverse-e2e-v1\n"


@pytest.fixture(scope="module")
def appliance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:
    """A running appliance with open sign-up."""
    require_chromium()
    app = Appliance(tmp_path_factory.mktemp("e2e-compose") / "appliance", extra_args=["--open-signup"])
    app.start()
    try:
        yield app
    finally:
        app.stop()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def screenshots() -> Path | None:
    folder = os.environ.get("MV_SCREENSHOTS")
    if not folder:
        return None
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    return path


# -- in the page alone ------------------------------------------------------------------------------------

DRAFTS_JS = """
async ({ drafts, date, path }) => {
  const { buildMessage } = await import('/js/mail/compose.js');
  const { twinOf, twinJson } = await import('/js/mail/e2e.js');
  const { fromB64, toB64 } = await import('/js/crypto/bytes.js');
  return drafts.map((d) => {
    const draft = { ...d, attachments: (d.attachments || []).map((a) => ({ ...a, bytes: fromB64(a.bytes) })) };
    const { message, layout } = buildMessage(draft, 'example.org', { date, opaque: true, stamps: d.stamps || [] });
    return { message: toB64(message), twin: twinJson(twinOf(layout, path, date)) };
  });
}
"""

DRAFTS: list[dict[str, Any]] = [
    {  # quoted-printable: trailing blanks, "=", a long line, a lone CR, a dot line; RFC 2047 subject; reply ids
        "from": ALICE, "to": [BOB, "x@y.test"], "cc": [f"carol@{DOMAIN}"], "bcc": ["hidden@z.test"],
        "subject": "Grüße =? and more", "text": "hello  \nline2=end\t\n" + "x" * 100 + "\n.\nFrom me\r",
        "inReplyTo": "<a@b.test>", "references": "<a@b.test>\r\n <c@d.test> junk",
    },
    {  # base64 text; text/plain, text/html, message/rfc822 and untyped attachments; Unicode and "=?" file names
        "from": ALICE, "to": [BOB], "cc": [], "bcc": [], "subject": "files",
        "text": "ÄÖÜ日本語 \u2028 </script> \u0001\ufeff",
        "attachments": [
            {"filename": "ä.txt", "type": "text/plain", "bytes": b64(bytes([1, 2, 3, 200]))},
            {"filename": "page.html", "type": "text/html", "bytes": b64(b"<b>x</b><script>1</script>")},
            {"filename": "mail.eml", "type": "message/rfc822", "bytes": b64(b"Subject: inner\r\n\r\nbody\r\n")},
            {"filename": 'a "q" =?x?= b.bin', "type": "", "bytes": b64(bytes(range(256)) * 20)},
        ],
    },
    {  # only Bcc (no To header); a long subject folded into many encoded words; an empty body
        "from": ALICE, "to": [], "cc": [], "bcc": [BOB], "subject": "x" * 950 + "ü" * 40, "text": "",
    },
    {  # 30 To addresses folded; a Unicode local part in From; a BOM and emoji; stamps written first
        "from": f"jörg@{DOMAIN}", "to": [f"user{i}@{DOMAIN}" for i in range(30)], "cc": [], "bcc": [],
        "subject": "   spaced  ", "text": "\ufeffbom first 😀 emoji " * 30,
        "stamps": ["1:20:2612061200:user0@example.org::abc:def", "1:20:2612061200:user1@example.org::abc:deg"],
    },
]  # fmt: skip


def test_twin_built_in_the_page_is_convert_document(browser: Any, appliance: Appliance) -> None:
    """For every kind of message compose.js writes, the page's twin is jsonout.dumps(convert_document(...))."""
    page = new_page(browser, appliance)
    date = 1765062000123
    path = f"Mail/In/{date}_42"
    built = page.evaluate(DRAFTS_JS, {"drafts": DRAFTS, "date": date, "path": path})
    assert len(built) == len(DRAFTS)
    for case in built:
        raw = base64.b64decode(case["message"])
        expected = jsonout.dumps(convert_document(raw, original_path=path, written_ms=date, safe_html=True))
        assert case["twin"] == expected
        assert b"hidden@z.test" not in raw
    first = base64.b64decode(built[0]["message"])
    assert b"Content-Transfer-Encoding: quoted-printable" in first and b"=?UTF-8?B?" in first
    files = base64.b64decode(built[1]["message"])
    assert files.count(b"Content-Type: application/octet-stream") == 4  # parsed types go as bytes
    page.context.close()


CRYPTO_JS = """
async ({ privateDer, keys, message, stamp }) => {
  const { signOriginal, sealCompressed, mintStamp } = await import('/js/mail/e2e.js');
  const { fromB64, toB64 } = await import('/js/crypto/bytes.js');
  const { deflate } = await import('/js/crypto/zlib.js');
  const data = fromB64(message);
  const keyId = '0b6a4a52-0000-4000-8000-000000000001';
  const e2e = await signOriginal(fromB64(privateDer), data, 'alice@example.org', keyId);
  const compressed = await deflate(data);
  const sealed = [];
  for (const key of keys) {
    sealed.push(toB64(await sealCompressed({ format: key.format, publicDer: fromB64(key.der) }, compressed)));
  }
  return { e2e, sealed, stamp: await mintStamp(stamp) };
}
"""


def test_signature_envelopes_and_stamps_open_in_python(browser: Any, appliance: Appliance) -> None:
    """The page's e2e signature verifies with cryptography; its v1 and v2 objects open with the appliance's code; its
    Hashcash stamp passes hashcash.check; a flipped byte fails each."""
    page = new_page(browser, appliance)
    signer = generate_private_key(2048)
    recipients = {fmt: generate_private_key(2048) for fmt in ("v1", "v2")}
    message = b"From: alice@example.org\r\nSubject: x\r\n\r\n" + os.urandom(5000)
    out = page.evaluate(
        CRYPTO_JS,
        {
            "privateDer": b64(private_key_der(signer)),
            "keys": [{"format": fmt, "der": b64(public_key_der(key.public_key()))} for fmt, key in recipients.items()],
            "message": b64(message),
            "stamp": BOB,
        },
    )
    e2e = out["e2e"]
    assert list(e2e) == ["v", "from", "key_id", "sha256", "signature"]
    assert e2e["v"] == 1 and e2e["from"] == "alice@example.org"
    digest = base64.b64decode(e2e["sha256"])
    assert digest == hashlib.sha256(message).digest()
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    signer.public_key().verify(base64.b64decode(e2e["signature"]), SIGNED_PREFIX + digest, pss, hashes.SHA256())
    with pytest.raises(InvalidSignature):
        signer.public_key().verify(base64.b64decode(e2e["signature"]), SIGNED_PREFIX + bytes(32), pss, hashes.SHA256())
    for (fmt, key), blob_b64 in zip(recipients.items(), out["sealed"], strict=True):
        blob = base64.b64decode(blob_b64)
        assert formats.format_of(blob) == fmt
        assert formats.open_mail_object(key, blob) == message
        tampered = bytearray(blob)
        tampered[-20] ^= 1
        with pytest.raises(DecryptionError):
            formats.open_mail_object(key, bytes(tampered))
    checked = hashcash.check(out["stamp"], resource=BOB, now=datetime.datetime.now(datetime.UTC))
    assert checked.bits == 20
    page.context.close()


# -- two users on one appliance ---------------------------------------------------------------------------


def keys_checked(page: Any) -> int:
    return int(page.locator("body").get_attribute("data-keys-checked") or 0)


def signup_with(page: Any, name: str) -> None:
    """Sign up through the form; the client logs in and its login-time watch publishes the account's key."""
    page.click("#tab-signup")
    page.fill("#signup-user", name)
    page.fill("#signup-password", PASSWORD)
    page.fill("#signup-password2", PASSWORD)
    page.click("#signup-form button[type=submit]")
    page.wait_for_selector("#app:not([hidden])", timeout=180_000)
    wait_synced(page, 1)
    wait_until(page, lambda: keys_checked(page) >= 1, 120.0)


class Traffic:
    """The page's sends as the browser made them: the bodies of /api/send/sealed, and how many /api/send."""

    def __init__(self, page: Any) -> None:
        self.sealed: list[dict[str, Any]] = []
        self.plain = 0
        page.on("request", self._seen)

    def _seen(self, request: Any) -> None:
        if request.method != "POST":
            return
        if request.url.endswith("/api/send/sealed"):
            self.sealed.append(json.loads(request.post_data))
        elif request.url.endswith("/api/send"):
            self.plain += 1


def compose(page: Any, to: str, subject: str, text: str) -> None:
    page.click("#compose-button")
    page.wait_for_selector("#compose[open]")
    page.fill("#compose-to", to)
    page.fill("#compose-subject", subject)
    page.fill("#compose-text", text)
    page.locator("#compose-text").focus()  # the recipients' change is judged (the lock line)


def lock(page: Any) -> Any:
    return page.locator("#compose-lock")


def client_of(app: Appliance, user: str) -> Client:
    client = Client(HttpsTransport(base_url(app), ca_file=str(self_signed_cert(app))), user)
    client.login(PASSWORD)
    return client


def stored_blob(app: Appliance, user: str, path: str) -> bytes:
    """The bytes the appliance stores for ``user`` at ``path``, read from its database."""
    engine = create_engine(f"sqlite:///{app.data_dir / 'mailiverse.sqlite3'}")
    try:
        with engine.begin() as conn:
            account = get_user_txn(conn, user)
            assert account is not None
            return read_object_txn(conn, account.id, path)
    finally:
        engine.dispose()


def badge(page: Any) -> Any:
    return page.locator("#e2e-badge")


def open_row(page: Any, subject: str) -> None:
    wait_until(page, lambda: row(page, subject).count() == 1)
    row(page, subject).click()
    page.wait_for_selector("#reader:not([hidden]) #reader-subject")


def test_alice_seals_bob_reads_the_signed_message(browser: Any, appliance: Appliance) -> None:
    """alice's page seals to bob: only /api/send/sealed, the stored objects are the uploaded bytes, the twin is
    convert_document's plus e2e, bob sees "signed by alice"; a tampered signature shows "signature not verified"."""
    alice = new_page(browser, appliance, viewport={"width": 900, "height": 1100})
    signup_with(alice, "alice")
    bob = new_page(browser, appliance)
    signup_with(bob, "bob")
    traffic = Traffic(alice)

    subject = "Sealed on alice's device"
    text = "Only bob can read this.\nGrüße, alice"
    compose(alice, BOB, subject, text)
    wait_until(alice, lambda: lock(alice).get_attribute("data-way") == "e2e")
    assert lock(alice).inner_text() == (
        f"End-to-end encrypted: sealed on this device for {BOB}; the server cannot read it."
    )
    folder = screenshots()
    if folder:
        lock(alice).scroll_into_view_if_needed()
        alice.locator("#compose").screenshot(path=str(folder / "compose-e2e.png"))
    started = time.monotonic()
    alice.click("#send-button")
    alice.wait_for_selector("#compose", state="hidden")
    print(f"sealed and sent to 1 recipient: {(time.monotonic() - started) * 1000:.0f} ms")
    assert traffic.plain == 0 and len(traffic.sealed) == 1
    body = traffic.sealed[0]
    key_base = body["key_base"]
    assert re.fullmatch(r"[0-9]{13}_[0-9]{1,19}", key_base)
    assert body["from"] == ALICE and set(body) == {"from", "key_base", "envelopes", "sent"}
    [envelope] = body["envelopes"]
    assert envelope["to"] == BOB

    # What the appliance stores is what the page uploaded, byte for byte.
    sent_base = body["sent"]["key_base"]  # the Sent copy's own name
    assert sent_base != key_base
    for user, folder_name, base, objects in (
        ("bob", "In", key_base, envelope),
        ("alice", "Sent", sent_base, body["sent"]),
    ):
        assert stored_blob(appliance, user, f"Mail/{folder_name}/{base}") == base64.b64decode(objects["original"])
        assert stored_blob(appliance, user, f"Mail/{folder_name}_Json/{base}") == base64.b64decode(objects["twin"])

    # Opened with bob's key: the twin is convert_document of the original with the e2e member, and the signature is
    # alice's directory key's over "mailiverse-e2e-v1\n" + SHA-256(original).
    reader = client_of(appliance, "bob")
    try:
        original = reader.open_sealed(base64.b64decode(envelope["original"]))
        twin_text = reader.open_sealed(base64.b64decode(envelope["twin"])).decode("utf-8")
    finally:
        reader.close()
    twin = json.loads(twin_text)
    e2e = twin["e2e"]
    written = int(key_base.partition("_")[0])
    document = convert_document(original, original_path=f"Mail/In/{key_base}", written_ms=written, safe_html=True)
    assert twin_text == jsonout.dumps({**document, "e2e": e2e, "delivered_to": BOB})
    assert e2e["from"] == ALICE and e2e["key_id"] == body["sent"]["key_id"] != envelope["key_id"]
    assert base64.b64decode(e2e["sha256"]) == hashlib.sha256(original).digest()
    engine = create_engine(f"sqlite:///{appliance.data_dir / 'mailiverse.sqlite3'}")
    with engine.begin() as conn:
        account = get_user_txn(conn, "alice")
        assert account is not None
        alice_key = load_der_public_key(account.public_key)
    engine.dispose()
    assert isinstance(alice_key, rsa.RSAPublicKey)
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    alice_key.verify(base64.b64decode(e2e["signature"]), SIGNED_PREFIX + base64.b64decode(e2e["sha256"]), pss,
                     hashes.SHA256())  # fmt: skip
    assert b"Only bob can read this." in original

    # bob reads it in the browser: verified, signed by alice.
    check_mail(bob)
    open_row(bob, subject)
    wait_until(bob, lambda: badge(bob).get_attribute("data-verified") is not None)
    assert badge(bob).get_attribute("data-verified") == "true"
    assert badge(bob).inner_text() == f"End-to-end encrypted · signed by {ALICE}"
    assert "Only bob can read this." in bob.inner_text("#reader .body")
    if folder:
        bob.screenshot(path=str(folder / "reader-e2e.png"))

    # The same message with its signature flipped, sealed to bob and stored as another message: not verified.
    forged = dict(twin)
    signature = bytearray(base64.b64decode(e2e["signature"]))
    signature[10] ^= 1
    forged["e2e"] = {**e2e, "signature": b64(bytes(signature))}
    forged["content"] = {**twin["content"], "headers": [
        [name, b64(b"Tampered copy") if name == "Subject" else value] for name, value in twin["content"]["headers"]
    ]}  # fmt: skip
    tampered_base = f"{written + 1}_7"
    forged["original"] = f"Mail/In/{tampered_base}"
    engine = create_engine(f"sqlite:///{appliance.data_dir / 'mailiverse.sqlite3'}")
    with engine.begin() as conn:
        account = get_user_txn(conn, "bob")
        assert account is not None
        bob_key = load_der_public_key(account.public_key)
        assert isinstance(bob_key, rsa.RSAPublicKey)
        now = int(time.time() * 1000)
        put_object_txn(
            conn, account.id, f"Mail/In/{tampered_base}", formats.seal_mail_object("v2", bob_key, original), now_ms=now
        )
        put_object_txn(
            conn,
            account.id,
            f"Mail/In_Json/{tampered_base}",
            formats.seal_mail_object("v2", bob_key, jsonout.dumps(forged).encode("utf-8")),
            now_ms=now,
        )
    engine.dispose()
    check_mail(bob)
    open_row(bob, "Tampered copy")
    wait_until(bob, lambda: badge(bob).get_attribute("data-verified") is not None)
    assert badge(bob).get_attribute("data-verified") == "false"
    assert badge(bob).inner_text().startswith("End-to-end encrypted · signature not verified (")
    assert f"does not verify with the key of {ALICE}" in badge(bob).inner_text()

    # alice's Sent copy opens with her key and carries the same signature.
    alice.click("#folders [data-folder=sent]")
    check_mail(alice)
    open_row(alice, subject)
    wait_until(alice, lambda: badge(alice).get_attribute("data-verified") == "true")
    alice.context.close()
    bob.context.close()


def test_no_appliance_is_said_first_and_a_forged_key_is_refused(browser: Any, appliance: Appliance) -> None:
    """A recipient without an appliance: the lock line and the first Send say so, nothing is sent; the second Send
    goes to /api/send. A forged key for bob: the lock line shows the alarm and Send is refused with the banner."""
    alice = new_page(browser, appliance)
    login(alice, "alice")
    traffic = Traffic(alice)
    compose(alice, f"{BOB}, {NOWHERE}", "Ordinary mail", "Hello.")
    notice = f"Not end-to-end: {NOWHERE} has no mailiverse appliance; this message will be sent as ordinary mail."
    wait_until(alice, lambda: lock(alice).get_attribute("data-way") == "plain")
    assert lock(alice).inner_text() == notice
    say = alice.locator("#compose-status")
    alice.click("#send-button")
    wait_until(alice, lambda: say.inner_text().startswith("Not end-to-end"))
    assert say.inner_text() == f"{notice} Press Send again to send it anyway."
    assert traffic.plain == 0 and traffic.sealed == []
    assert alice.locator("#compose[open]").count() == 1
    alice.click("#send-button")
    wait_until(alice, lambda: traffic.plain == 1)
    wait_until(alice, lambda: not say.inner_text().startswith("Not end-to-end"))
    assert traffic.sealed == []
    alice.click("#discard-button")

    # A key for bob that the pinned log key did not sign: the alarm, before and at Send.
    from tests.browser.test_keys_compose import attacker_answer

    forged = attacker_answer(BOB)
    pattern = re.compile(r".*/api/keys/" + re.escape(BOB) + "$")
    alice.route(
        pattern, lambda route: route.fulfill(status=200, content_type="application/json", body=json.dumps(forged))
    )
    compose(alice, BOB, "Held back", "Hello.")
    wait_until(alice, lambda: lock(alice).get_attribute("data-way") == "alarm")
    reason = "the signed tree head does not verify with the pinned log key"
    assert lock(alice).inner_text() == (
        f"Key alarm: the key of {BOB} failed verification ({reason}). This message cannot be sent."
    )
    alice.click("#send-button")
    wait_until(alice, lambda: say.inner_text().startswith("Not sent"))
    assert say.inner_text() == f"Not sent: the key of {BOB} failed verification ({reason})"
    assert alice.locator("#key-alarm").is_visible()
    assert traffic.sealed == [] and traffic.plain == 1
    assert len(stored(appliance, "bob", "Mail/In_Json/")) == 2  # the sealed message and the tampered copy only
    alice.context.close()


def test_under_the_organisation_policy_a_copy_is_sealed_to_the_organisation_key(
    browser: Any, appliance: Appliance
) -> None:
    """With example.org under the organisation policy, the page also seals a copy to the organisation key the
    directory proves for the domain (its key id the policy's), which the appliance stores in the organisation's
    account as uploaded; no page error or CSP report along the way."""
    appliance.admin("domain", "policy", DOMAIN, "organisation", "--officer", ALICE)
    alice = new_page(browser, appliance)
    problems: list[str] = []
    # (404s are answers the client expects, such as a cache object not written yet.)
    alice.on("console", lambda m: problems.append(m.text) if "Content Security Policy" in m.text else None)
    alice.on("pageerror", lambda e: problems.append(str(e)))
    login(alice, "alice")
    traffic = Traffic(alice)
    compose(alice, BOB, "For the organisation too", "Under the organisation policy.")
    wait_until(alice, lambda: lock(alice).get_attribute("data-way") == "e2e")
    alice.click("#send-button")
    alice.wait_for_selector("#compose", state="hidden")
    assert traffic.plain == 0 and len(traffic.sealed) == 1
    body = traffic.sealed[0]
    personal = [e for e in body["envelopes"] if "to" in e]
    [copy] = [e for e in body["envelopes"] if "organisation" in e]
    assert [e["to"] for e in personal] == [BOB] and copy["organisation"] == DOMAIN
    assert copy["key_id"] not in {personal[0]["key_id"], body["sent"]["key_id"]}
    key_base = body["key_base"]
    assert stored_blob(appliance, "organisation", f"Mail/In/{key_base}") == base64.b64decode(copy["original"])
    assert stored_blob(appliance, "organisation", f"Mail/In_Json/{key_base}") == base64.b64decode(copy["twin"])
    assert stored_blob(appliance, "bob", f"Mail/In/{key_base}") == base64.b64decode(personal[0]["original"])
    assert problems == []
    alice.context.close()


# -- two appliances ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    """a.example on 127.0.0.2 and b.example on 127.0.0.3, announced to each other (tests/support/federation.py)."""
    require_chromium()
    with federation(tmp_path_factory.mktemp("e2e-federation")) as running:
        yield running


def peer_page(browser: Any, peer: Peer) -> Any:
    context = browser.new_context(ignore_https_errors=True)
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(peer.url + "/")
    return page


def test_sealed_for_another_appliance_and_read_there(browser: Any, pair: Federation) -> None:
    """alice@a.example's page seals to bob@b.example with the key B's directory gave through A (B's log key pinned
    in alice's Settings/keylog); the carrier reaches B, and bob's page shows "signed by alice@a.example" after
    checking her key through B at A; both trust states hold the other's log, in the Python client's form."""
    alice = peer_page(browser, pair.a)
    signup_with(alice, "alice")
    bob = peer_page(browser, pair.b)
    signup_with(bob, "bob")
    traffic = Traffic(alice)
    compose(alice, "bob@b.example", "Across appliances", "Sealed at a.example, opened at b.example.")
    wait_until(alice, lambda: lock(alice).get_attribute("data-way") == "e2e")
    alice.click("#send-button")
    alice.wait_for_selector("#compose", state="hidden")
    assert traffic.plain == 0 and len(traffic.sealed) == 1
    [envelope] = traffic.sealed[0]["envelopes"]
    assert envelope["to"] == "bob@b.example"

    deadline = time.monotonic() + 90
    while row(bob, "Across appliances").count() == 0 and time.monotonic() < deadline:
        check_mail(bob)
        bob.wait_for_timeout(1000)
    assert row(bob, "Across appliances").count() == 1, f"{pair.a.log()[-3000:]}\n{pair.b.log()[-3000:]}"
    open_row(bob, "Across appliances")
    wait_until(bob, lambda: badge(bob).get_attribute("data-verified") is not None)
    assert badge(bob).inner_text() == "End-to-end encrypted · signed by alice@a.example"
    assert badge(bob).get_attribute("data-verified") == "true"

    # Each browser pinned the other appliance's log key, in the state the Python client reads.
    for peer, user, other in ((pair.a, "alice", pair.b), (pair.b, "bob", pair.a)):
        client = Client(HttpsTransport(peer.url, fingerprint=peer.fingerprint), user)
        client.login(PASSWORD)
        try:
            state = load_state(client)
        finally:
            client.close()
        assert set(state.remote) == {other.domain}
        assert b64(state.remote[other.domain].log_key) == other.prepare()
        assert state.remote[other.domain].head is not None
    alice.context.close()
    bob.context.close()
