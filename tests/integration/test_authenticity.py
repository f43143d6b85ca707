"""A real twistd refuses mail from outside that claims to come from one of its own users (issue 18's spoofed local
user), whatever DNS says and whether the message is judged in a worker or in the main process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.dnsserver import DnsProcess, Zone, start_dns_process
from tests.support.harness import DOMAIN, Appliance, stored
from tests.support.independent import open_mail
from tests.support.smtp import SmtpSession, make_message

pytestmark = pytest.mark.integration

SPOOF = (
    f"From: Alice <alice@{DOMAIN}>\r\nTo: bob@{DOMAIN}\r\nSubject: please pay this invoice\r\n"
    "Message-ID: <spoof-1@remote.test>\r\n\r\nHi Bob, it is really me.\r\n"
).encode()


@pytest.fixture
def dns(tmp_path: Path) -> Iterator[DnsProcess]:
    """A DNS server of the test's, publishing a DMARC record that would let anyone send as the local domain."""
    zone = Zone()
    zone.update({f"_dmarc.{DOMAIN}": {"TXT": ["v=DMARC1; p=none"]}, DOMAIN: {"TXT": ["v=spf1 +all"]}})
    server = start_dns_process(zone, tmp_path / "dns")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["1", "0"], ids=["workers", "no-workers"])
def appliance(request: pytest.FixtureRequest, tmp_path: Path, dns: DnsProcess) -> Iterator[Appliance]:
    """A running appliance with users alice and bob, its lookups going to the test's DNS server."""
    host, port = dns.address
    app = Appliance(tmp_path / "appliance", extra_args=["--workers", request.param, "--dns-server", f"{host}:{port}"])
    app.start()
    try:
        app.add_user("alice")
        app.add_user("bob", "v2")
        yield app
    finally:
        app.stop()


def send(app: Appliance, sender: str, rcpt: str, body: bytes) -> tuple[int, bytes]:
    session = SmtpSession(app.smtp_port, timeout=60)
    try:
        session.hello()
        session.envelope([rcpt], sender=sender)
        return session.send_data(body)
    finally:
        session.close()


def test_mail_from_outside_as_a_local_user_is_refused(appliance: Appliance) -> None:
    """``MAIL FROM:<alice@example.org>`` with ``From: alice@example.org`` to bob over the MX listener: 550 5.7.1 at
    the end of DATA and nothing stored, though the domain's SPF allows every host; mail from a remote sender
    to bob is still delivered."""
    code, reply = send(appliance, f"alice@{DOMAIN}", f"bob@{DOMAIN}", SPOOF)
    assert (code, reply[:9]) == (550, b"550 5.7.1"), reply
    assert stored(appliance, "bob", "Mail/") == []
    # The same From behind a remote envelope sender is refused too: the From is what readers see.
    assert send(appliance, "bob@remote.test", f"bob@{DOMAIN}", SPOOF)[0] == 550
    code, reply = send(appliance, "bob@remote.test", f"bob@{DOMAIN}", make_message("hello", "Hi.\n", f"bob@{DOMAIN}"))
    assert code == 250, reply
    assert len(stored(appliance, "bob", "Mail/In")) == 2
    assert "refused with 550: local-domain" in appliance.log()


def _mail(sender: str, subject: str) -> bytes:
    return (
        f"From: Sender <{sender}>\r\nTo: bob@{DOMAIN}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '-')}@test>\r\nDate: Sun, 06 Dec 2026 10:00:00 +0000\r\n\r\n"
        "Hello Bob.\r\n"
    ).encode()


@pytest.fixture
def judged(tmp_path: Path) -> Iterator[tuple[Appliance, bytes, Any]]:
    """An appliance (one worker) whose DNS server publishes: strict.test (SPF -all, DMARC p=reject),
    doubtful.test (SPF -all, DMARC p=quarantine) and signed.test (a DKIM key of OpenDKIM's, DMARC p=reject);
    and a DKIM-signed message from signed.test, signed by OpenDKIM's own library (rsa-sha256)."""
    from tests.support.opendkim import generate_key, sign_with_libopendkim

    key = generate_key(tmp_path / "dkim", "signed.test", "od")
    zone = Zone()
    zone.update(
        {
            "strict.test": {"TXT": ["v=spf1 -all"]},
            "_dmarc.strict.test": {"TXT": ["v=DMARC1; p=reject"]},
            "doubtful.test": {"TXT": ["v=spf1 -all"]},
            "_dmarc.doubtful.test": {"TXT": ["v=DMARC1; p=quarantine"]},
            key.name: {"TXT": [key.record]},
            "_dmarc.signed.test": {"TXT": ["v=DMARC1; p=reject"]},
        }
    )
    dns = start_dns_process(zone, tmp_path / "dns")
    host, port = dns.address
    app = Appliance(tmp_path / "appliance", extra_args=["--workers", "1", "--dns-server", f"{host}:{port}"])
    app.start()
    try:
        bob = app.add_user("bob", "v2")
        yield app, sign_with_libopendkim(_mail("news@signed.test", "signed"), key), bob
    finally:
        app.stop()
        dns.stop()


def test_dmarc_policies_and_dkim_through_a_real_dns_server(judged: tuple[Appliance, bytes, Any]) -> None:
    """p=reject failing: 550 5.7.1, nothing stored; p=quarantine failing: stored in Mail/Spam; a message
    signed by an independent DKIM signer: stored in the inbox with dkim=pass and dmarc=pass recorded; a
    sender whose DNS never answers: 451 4.7.0 (the sender retries), nothing stored."""
    app, signed, bob = judged
    code, reply = send(app, "bounce@strict.test", f"bob@{DOMAIN}", _mail("ceo@strict.test", "rejected"))
    assert (code, reply[:9]) == (550, b"550 5.7.1"), reply
    assert send(app, "list@doubtful.test", f"bob@{DOMAIN}", _mail("list@doubtful.test", "doubtful"))[0] == 250
    assert len(stored(app, "bob", "Mail/Spam/")) == 1
    assert send(app, "news@signed.test", f"bob@{DOMAIN}", signed)[0] == 250
    inbox = stored(app, "bob", "Mail/In/")
    assert len(inbox) == 1
    original = open_mail(bob, app.admin("store", "cat", "bob", inbox[0]).stdout)
    results = original.split(b"\r\nReceived: ")[0]
    assert results.startswith(b"Authentication-Results: mail.example.org;"), original[:400]
    assert b"dkim=pass" in results and b"dmarc=pass" in results, results
    code, reply = send(app, "x@never.timeout.dns.test", f"bob@{DOMAIN}", _mail("x@never.timeout.dns.test", "late"))
    assert (code, reply[:9]) == (451, b"451 4.7.0"), reply
    assert len(stored(app, "bob", "Mail/In/")) == 1 and len(stored(app, "bob", "Mail/Spam/")) == 1


@pytest.fixture
def failing(tmp_path: Path) -> Iterator[tuple[Appliance, Any, bytes, bytes]]:
    """An appliance whose DNS server publishes soft.test (SPF ~all, DMARC p=none) and signed.test's OpenDKIM key
    (DMARC p=none); nokey.test signs with a key it never published. The messages are signed by libopendkim."""
    from tests.support.opendkim import generate_key, sign_with_libopendkim

    key = generate_key(tmp_path / "dkim", "signed.test", "od")
    unpublished = generate_key(tmp_path / "dkim-unpublished", "nokey.test", "gone")
    zone = Zone()
    zone.update(
        {
            "soft.test": {"TXT": ["v=spf1 ~all"]},
            "_dmarc.soft.test": {"TXT": ["v=DMARC1; p=none"]},
            key.name: {"TXT": [key.record]},
            "_dmarc.signed.test": {"TXT": ["v=DMARC1; p=none"]},
            "_dmarc.nokey.test": {"TXT": ["v=DMARC1; p=none"]},
        }
    )
    dns = start_dns_process(zone, tmp_path / "dns")
    host, port = dns.address
    app = Appliance(tmp_path / "appliance", extra_args=["--workers", "1", "--dns-server", f"{host}:{port}"])
    app.start()
    try:
        bob = app.add_user("bob", "v2")
        tampered = sign_with_libopendkim(_mail("news@signed.test", "tampered"), key).replace(b"Hello Bob.", b"Pay now.")
        yield app, bob, tampered, sign_with_libopendkim(_mail("news@nokey.test", "no key"), unpublished)
    finally:
        app.stop()
        dns.stop()


def _results_of(app: Appliance, bob: Any, subject: str) -> bytes:
    for path in stored(app, "bob", "Mail/"):
        if "_Json/" in path:
            continue
        original = open_mail(bob, app.admin("store", "cat", "bob", path).stdout)
        if f"Subject: {subject}\r\n".encode() in original:
            return original.split(b"\r\nReceived: ")[0]
    raise AssertionError(f"no message {subject!r} stored")


def test_tampered_body_missing_key_and_spf_softfail_are_recorded(
    failing: tuple[Appliance, Any, bytes, bytes],
) -> None:
    """A body changed after OpenDKIM signed it: dkim=fail; a signature whose key was never published:
    dkim=permerror; a sender whose SPF ends in ~all: spf=softfail. All under p=none: delivered, recorded."""
    app, bob, tampered, unsigned_key = failing
    assert send(app, "news@signed.test", f"bob@{DOMAIN}", tampered)[0] == 250
    assert b"dkim=fail header.d=signed.test header.s=od" in _results_of(app, bob, "tampered")
    assert send(app, "news@nokey.test", f"bob@{DOMAIN}", unsigned_key)[0] == 250
    assert b"dkim=permerror header.d=nokey.test header.s=gone" in _results_of(app, bob, "no key")
    assert send(app, "list@soft.test", f"bob@{DOMAIN}", _mail("list@soft.test", "soft"))[0] == 250
    results = _results_of(app, bob, "soft")
    assert b"spf=softfail smtp.mailfrom=soft.test" in results and b"dmarc=fail" in results, results
