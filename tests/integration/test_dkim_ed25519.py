"""A real twistd judges ed25519-sha256 DKIM signatures (RFC 8463) made by an independent signer, over a real DNS
server, in a delivery worker (isolated: it can open no file, so whatever verifying ed25519 imports came in first)
and in the main process (--workers 0).

The signer is OpenDKIM's library (libopendkim 2.11 signs ed25519-sha256 as its ``dkim_sign`` is asked to, through
ctypes as ``tests/support/opendkim.py`` does for rsa-sha256), with a key ``openssl genpkey`` made; the published
key is the bare 32 bytes (RFC 8463 §4.2), cut from openssl's DER as its last 32 bytes. dkimpy is not involved.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.dnsserver import Zone, start_dns_process
from tests.support.harness import DOMAIN, Appliance, stored
from tests.support.independent import open_mail
from tests.support.opendkim import OpenDkimKey, generate_ed25519_key, generate_key, sign_with_libopendkim
from tests.support.smtp import SmtpSession

pytestmark = pytest.mark.integration

#: DMARC p=reject: a tampered message is refused. LENIENT publishes p=none: it is stored, its failures recorded.
STRICT = "ed.test"
LENIENT = "lenient.test"


def sign_ed25519_with_libopendkim(message: bytes, key: OpenDkimKey) -> bytes:
    return sign_with_libopendkim(message, key, ed25519=True)


def mail(sender: str, subject: str) -> bytes:
    return (
        f"From: Sender <{sender}>\r\nTo: bob@{DOMAIN}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '-')}@test>\r\nDate: Sun, 06 Dec 2026 10:00:00 +0000\r\n\r\n"
        "Hello Bob.\r\nThe figures are attached.\r\n"
    ).encode()


@dataclass
class Judged:
    app: Appliance
    bob: Any
    ed25519: dict[str, OpenDkimKey]
    rsa: OpenDkimKey


@pytest.fixture(scope="module", params=["1", "0"], ids=["workers", "no-workers"])
def judged(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Judged]:
    """An appliance (one worker, or none) whose DNS server publishes ed.test (an ed25519 key of openssl's and an
    RSA key of opendkim-genkey's, SPF -all, DMARC p=reject) and lenient.test (an ed25519 key, DMARC p=none)."""
    tmp = tmp_path_factory.mktemp("ed25519")
    ed25519 = {domain: generate_ed25519_key(tmp / "dkim", domain, "ed") for domain in (STRICT, LENIENT)}
    rsa = generate_key(tmp / "dkim", STRICT, "rsa")
    zone = Zone()
    records: dict[str, Any] = {rsa.name: {"TXT": [rsa.record]}}
    for domain, key in ed25519.items():
        records[domain] = {"TXT": ["v=spf1 -all"]}
        records[key.name] = {"TXT": [key.record]}
    records[f"_dmarc.{STRICT}"] = {"TXT": ["v=DMARC1; p=reject"]}
    records[f"_dmarc.{LENIENT}"] = {"TXT": ["v=DMARC1; p=none"]}
    zone.update(records)
    dns = start_dns_process(zone, tmp / "dns")
    host, port = dns.address
    app = Appliance(tmp / "appliance", extra_args=["--workers", request.param, "--dns-server", f"{host}:{port}"])
    app.start()
    try:
        yield Judged(app, app.add_user("bob", "v2"), ed25519, rsa)
    finally:
        app.stop()
        dns.stop()


def send(app: Appliance, sender: str, body: bytes) -> tuple[int, bytes]:
    session = SmtpSession(app.smtp_port, timeout=60)
    try:
        session.hello()
        session.envelope([f"bob@{DOMAIN}"], sender=sender)
        return session.send_data(body)
    finally:
        session.close()


def delivered(judged: Judged, sent: bytes, folder: str = "Mail/In") -> tuple[list[bytes], dict[str, Any]]:
    """The Authentication-Results lines the appliance put above ``sent`` in bob's ``folder``, and the twin's
    ``authentication`` member (with the twin's ``spam`` member as ``authentication["spam"]``)."""
    app = judged.app
    for path in stored(app, "bob", f"{folder}/"):
        original = open_mail(judged.bob, app.admin("store", "cat", "bob", path).stdout)
        if original.endswith(sent):
            break
    else:
        raise AssertionError(f"the message is not in bob's {folder}")
    header = original[: -len(sent)].split(b"\r\nReceived: ")[0]
    assert header.startswith(b"Authentication-Results: mail.example.org;"), header
    lines = [line.strip().rstrip(b";") for line in header.split(b"\r\n")[1:]]
    twin_path = path.replace(f"{folder}/", f"{folder}_Json/", 1)
    twin = json.loads(open_mail(judged.bob, app.admin("store", "cat", "bob", twin_path).stdout))
    assert twin["original"] == path
    return lines, {**twin["authentication"], "spam": twin.get("spam")}


def dkim_in_twin(authentication: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(r["result"], r["domain"], r["selector"]) for r in authentication["results"] if r["method"] == "dkim"]


def dmarc_in_twin(authentication: dict[str, Any]) -> str:
    (dmarc,) = [r["result"] for r in authentication["results"] if r["method"] == "dmarc"]
    return str(dmarc)


def test_an_ed25519_signature_passes_and_carries_dmarc(judged: Judged) -> None:
    """An ed25519-sha256 signature of OpenDKIM's for the From domain, whose SPF fails: 250, stored in the inbox,
    dkim=pass (header.d, header.s) and dmarc=pass in Authentication-Results and in the twin; the sender verified."""
    sent = sign_ed25519_with_libopendkim(mail(f"news@{STRICT}", "ed25519 pass"), judged.ed25519[STRICT])
    code, reply = send(judged.app, f"news@{STRICT}", sent)
    assert code == 250, reply
    lines, authentication = delivered(judged, sent)
    assert b"dkim=pass header.d=ed.test header.s=ed" in lines, lines
    assert any(line.startswith(b"dmarc=pass") for line in lines), lines
    assert any(line.startswith(b"spf=fail") for line in lines), lines
    assert dkim_in_twin(authentication) == [("pass", STRICT, "ed")]
    assert dmarc_in_twin(authentication) == "pass"
    assert authentication["verdict"] == "verified"


def test_an_ed25519_signature_over_a_tampered_body_fails(judged: Judged) -> None:
    """The body changed after OpenDKIM signed it: under p=reject, 550 5.7.1 and nothing stored; under p=none,
    stored with dkim=fail and dmarc=fail recorded in Authentication-Results and the twin, in the spam folder:
    SPF, DKIM and DMARC all failing is the built-in spam check's threshold (a forgery whose signature broke)."""
    before = len(stored(judged.app, "bob", "Mail/"))
    strict = sign_ed25519_with_libopendkim(mail(f"news@{STRICT}", "ed25519 tampered"), judged.ed25519[STRICT])
    code, reply = send(judged.app, f"news@{STRICT}", strict.replace(b"The figures", b"New bank details"))
    assert (code, reply[:9]) == (550, b"550 5.7.1"), reply
    assert len(stored(judged.app, "bob", "Mail/")) == before

    lenient = sign_ed25519_with_libopendkim(mail(f"news@{LENIENT}", "ed25519 lenient"), judged.ed25519[LENIENT])
    tampered = lenient.replace(b"The figures", b"New bank details")
    code, reply = send(judged.app, f"news@{LENIENT}", tampered)
    assert code == 250, reply
    lines, authentication = delivered(judged, tampered, "Mail/Spam")
    assert b"dkim=fail header.d=lenient.test header.s=ed" in lines, lines
    assert any(line.startswith(b"dmarc=fail") for line in lines), lines
    assert dkim_in_twin(authentication) == [("fail", LENIENT, "ed")]
    assert dmarc_in_twin(authentication) == "fail"
    assert authentication["quarantined"] is True
    assert authentication["spam"]["symbols"] == ["SPF_FAIL", "DKIM_FAIL", "DMARC_FAIL"]


def test_an_rsa_and_an_ed25519_signature_are_both_verified_and_recorded(judged: Judged) -> None:
    """A message OpenDKIM signed twice, rsa-sha256 and then ed25519-sha256 (RFC 8463 §6's dual signing): both
    pass and both are recorded, newest first, in Authentication-Results and the twin; and with the RSA key's
    signature broken (its signed Subject changed after the RSA signing, before the ed25519 one)
    the ed25519 pass alone still carries DMARC."""
    rsa_signed = sign_with_libopendkim(mail(f"news@{STRICT}", "dual signed"), judged.rsa)
    sent = sign_ed25519_with_libopendkim(rsa_signed, judged.ed25519[STRICT])
    code, reply = send(judged.app, f"news@{STRICT}", sent)
    assert code == 250, reply
    lines, authentication = delivered(judged, sent)
    dkim_lines = [line for line in lines if line.startswith(b"dkim=")]
    assert dkim_lines == [b"dkim=pass header.d=ed.test header.s=ed", b"dkim=pass header.d=ed.test header.s=rsa"]
    assert dkim_in_twin(authentication) == [("pass", STRICT, "ed"), ("pass", STRICT, "rsa")]
    assert dmarc_in_twin(authentication) == "pass"

    broken = rsa_signed.replace(b"Subject: dual signed", b"Subject: dual signed, RSA broken")
    sent = sign_ed25519_with_libopendkim(broken, judged.ed25519[STRICT])
    assert send(judged.app, f"news@{STRICT}", sent)[0] == 250
    lines, authentication = delivered(judged, sent)
    assert dkim_in_twin(authentication) == [("pass", STRICT, "ed"), ("fail", STRICT, "rsa")]
    assert dmarc_in_twin(authentication) == "pass"
