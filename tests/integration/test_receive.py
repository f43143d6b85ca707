"""A real twistd receives mail over SMTP and stores it encrypted, readable only with the user's key."""

from __future__ import annotations

import base64
import json
import os
import smtplib
import stat
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.support.harness import DOMAIN, Appliance, self_signed_cert, stored, tls_context
from tests.support.independent import open_mail
from tests.support.smtp import make_message, send_starttls

pytestmark = pytest.mark.integration


def raw_object(app: Appliance, user: str, path: str) -> bytes:
    return app.admin("store", "cat", user, path).stdout


def check_delivered(app: Appliance, key, user: str, sent: bytes) -> dict:
    originals = stored(app, user, "Mail/In/")
    twins = stored(app, user, "Mail/In_Json/")
    assert len(originals) == 1 and len(twins) == 1, (originals, twins)
    assert originals[0].split("/")[-1] == twins[0].split("/")[-1]
    original = open_mail(key, raw_object(app, user, originals[0]))
    assert original.endswith(sent)
    added = original[: -len(sent)]
    # What the appliance adds, on top (RFC 8601 §5, RFC 5321 §4.4): its Authentication-Results (nothing is
    # published for remote.test: SPF none, no DKIM, no DMARC), then its trace header.
    results, _, trace = added.partition(b"\r\nReceived: ")
    assert results.startswith(b"Authentication-Results: mail.example.org;"), added
    assert b"spf=none smtp.mailfrom=remote.test" in results and b"dmarc=none" in results, results
    trace = b"Received: " + trace
    assert trace.startswith(b"Received: from client.test")
    lines = trace.split(b"\r\n")
    assert lines[-1] == b"" and all(line[:1] in (b" ", b"\t") for line in lines[1:-1]), trace
    assert all(line[:1] in (b" ", b"\t") for line in results.split(b"\r\n")[1:]), results
    twin = json.loads(open_mail(key, raw_object(app, user, twins[0])))
    assert twin["original"] == originals[0]
    return twin


def test_starttls_delivery_is_stored_encrypted_in_v1(appliance: Appliance) -> None:
    """Mail over STARTTLS is stored as Mailiverse v1 objects that decrypt to the bytes sent plus a trace header."""
    key = appliance.add_user("alice", "v1")
    sent = make_message("Hello over STARTTLS", "Hi Alice,\nthis is the body.\n")
    assert send_starttls(appliance, [f"alice@{DOMAIN}"], sent) == {}
    originals = stored(appliance, "alice", "Mail/In/")
    assert raw_object(appliance, "alice", originals[0])[0] == 1
    twin = check_delivered(appliance, key, "alice", sent)
    headers = {name.lower(): base64.b64decode(v).decode() for name, v in twin["content"]["headers"]}
    assert headers["subject"] == "Hello over STARTTLS"
    assert base64.b64decode(twin["addresses"]["from"][0]["email"]) == b"bob@remote.test"
    assert base64.b64decode(twin["addresses"]["to"][0]["email"]) == f"alice@{DOMAIN}".encode()
    assert twin["content"]["class"] == "string"
    assert "this is the body." in twin["content"]["value"]
    assert twin["uidl"] == "<it-1@remote.test>"


def test_implicit_tls_delivery_in_v2_and_uppercase_local_part(appliance: Appliance) -> None:
    """SMTPS delivery to a v2 account, addressed in upper case, decrypts from the authenticated envelope."""
    key = appliance.add_user("carol", "v2")
    sent = make_message("Implicit TLS", "Body for Carol.\n", to=f"CAROL@{DOMAIN.upper()}")
    with smtplib.SMTP_SSL(
        "127.0.0.1", appliance.smtps_port, local_hostname="client.test", context=tls_context(appliance), timeout=30
    ) as smtp:
        assert smtp.sendmail("bob@remote.test", [f"CAROL@{DOMAIN.upper()}"], sent) == {}
    originals = stored(appliance, "carol", "Mail/In/")
    assert raw_object(appliance, "carol", originals[0])[0] == 2
    twin = check_delivered(appliance, key, "carol", sent)
    assert "Body for Carol." in twin["content"]["value"]


def test_unknown_recipient_and_relay_are_refused(appliance: Appliance) -> None:
    """Unknown local users get 550 5.1.1 and foreign domains are not relayed; nothing is stored."""
    appliance.add_user("alice")
    with smtplib.SMTP("127.0.0.1", appliance.smtp_port, local_hostname="client.test", timeout=30) as smtp:
        smtp.starttls(context=tls_context(appliance))
        smtp.ehlo()
        smtp.mail("bob@remote.test")
        code, text = smtp.rcpt(f"nobody@{DOMAIN}")
        assert code == 550 and b"5.1.1" in text
        code, text = smtp.rcpt("someone@elsewhere.test")
        assert code == 550 and b"5.7.1" in text
    assert stored(appliance, "alice", "Mail/") == []


def test_one_message_to_two_users_is_sealed_for_each(appliance: Appliance) -> None:
    """A message to two local users is stored once per user, each encrypted to that user's key."""
    alice = appliance.add_user("alice", "v1")
    dave = appliance.add_user("dave", "v2")
    sent = make_message("To both", "Shared body.\n", to=f"alice@{DOMAIN}, dave@{DOMAIN}")
    assert send_starttls(appliance, [f"alice@{DOMAIN}", f"dave@{DOMAIN}"], sent) == {}
    check_delivered(appliance, alice, "alice", sent)
    check_delivered(appliance, dave, "dave", sent)
    with pytest.raises(Exception):
        open_mail(alice, raw_object(appliance, "dave", stored(appliance, "dave", "Mail/In/")[0]))


def test_canary_never_appears_in_plaintext(appliance: Appliance) -> None:
    """A canary in subject, body and attachment appears nowhere in the data dir, database or logs."""
    appliance.add_user("alice")
    canary = "CANARY-7f3a9c1e-plaintext-must-not-leak"
    msg = EmailMessage()
    msg["From"] = "bob@remote.test"
    msg["To"] = f"alice@{DOMAIN}"
    msg["Subject"] = f"subject {canary}"
    msg.set_content(f"body {canary}\n" * 50)
    msg.add_attachment(
        f"attachment {canary}".encode(), maintype="application", subtype="octet-stream", filename="a.bin"
    )
    sent = msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))
    assert send_starttls(appliance, [f"alice@{DOMAIN}"], sent) == {}
    needles = [canary.encode(), base64.b64encode(canary.encode())[:24], canary.encode("utf-16-le")]
    for path in [*appliance.data_dir.rglob("*"), appliance.log_path]:
        if path.is_file():
            content = path.read_bytes()
            for needle in needles:
                assert needle not in content, f"canary found in {path}"


def test_first_start_layout_and_restart(tmp_path: Path) -> None:
    """First start makes a 0700 data dir with certificate, server keys and database; a restart reuses them."""
    app = Appliance(tmp_path / "appliance")
    app.start()
    try:
        key = app.add_user("alice")
    finally:
        app.stop()
    assert stat.S_IMODE(app.data_dir.stat().st_mode) == 0o700
    cert = self_signed_cert(app)
    cert_bytes = cert.read_bytes()
    keys = sorted((app.data_dir / "keys").iterdir())
    assert keys, "server keys were not generated"
    for path in app.data_dir.rglob("*"):
        if path.is_file():
            assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, f"{path} is readable by others"
    app.start()
    try:
        assert cert.read_bytes() == cert_bytes
        sent = make_message("After restart", "Still here.\n")
        assert send_starttls(app, [f"alice@{DOMAIN}"], sent) == {}
        check_delivered(app, key, "alice", sent)
    finally:
        app.stop()


def test_postgresql_backend(tmp_path: Path, postgres_url: str) -> None:
    """With --db postgresql://, mail is stored in PostgreSQL and mailiverse-admin finds it."""
    app = Appliance(tmp_path / "appliance", db_url=postgres_url)
    app.start()
    try:
        key = app.add_user("alice", "v2")
        sent = make_message("Stored in PostgreSQL", "PG body.\n")
        assert send_starttls(app, [f"alice@{DOMAIN}"], sent) == {}
        check_delivered(app, key, "alice", sent)
        assert not list(app.data_dir.glob("*.sqlite3"))
    finally:
        app.stop()


def test_admin_dump_and_decrypt_with_private_key(appliance: Appliance, tmp_path: Path) -> None:
    """store dump writes the raw objects and store cat --private-key shows the decrypted original."""
    from cryptography.hazmat.primitives import serialization

    key = appliance.add_user("alice")
    sent = make_message("Dump me", "Dump body.\n")
    send_starttls(appliance, [f"alice@{DOMAIN}"], sent)
    out = tmp_path / "dump"
    appliance.admin("store", "dump", "alice", "Mail/", str(out))
    files = sorted(p for p in out.rglob("*") if p.is_file())
    assert len(files) == 2
    path = stored(appliance, "alice", "Mail/In/")[0]
    assert (out / path).read_bytes() == raw_object(appliance, "alice", path)
    keyfile = tmp_path / "alice.key"
    keyfile.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    os.chmod(keyfile, 0o600)
    shown = appliance.admin("store", "cat", "alice", path, "--private-key", str(keyfile)).stdout
    assert shown.endswith(sent)
    bad = appliance.admin("store", "cat", "nobody", path, check=False)
    assert bad.returncode == 1 and b"no user" in bad.stderr


def test_a_retry_of_the_same_message_is_stored_once(appliance: Appliance) -> None:
    """A sender that sends the same bytes again (its 250 was lost) finds them stored: one copy per recipient; the
    next message, and the same one to a recipient who did not get it yet, are stored (store/receipts.py)."""
    appliance.add_user("alice", "v2")
    appliance.add_user("dave", "v2")
    first = make_message("Once", "Only once, please.\n")
    assert send_starttls(appliance, [f"alice@{DOMAIN}"], first) == {}
    assert send_starttls(appliance, [f"alice@{DOMAIN}"], first) == {}
    assert len(stored(appliance, "alice", "Mail/In/")) == 1
    assert send_starttls(appliance, [f"alice@{DOMAIN}", f"dave@{DOMAIN}"], first) == {}
    assert len(stored(appliance, "alice", "Mail/In/")) == 1
    assert len(stored(appliance, "dave", "Mail/In/")) == 1
    assert send_starttls(appliance, [f"alice@{DOMAIN}"], make_message("Twice", "Another one.\n")) == {}
    assert len(stored(appliance, "alice", "Mail/In/")) == 2
    assert len(stored(appliance, "alice", "Mail/In_Json/")) == 2
