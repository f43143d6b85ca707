"""Unit behaviour of the outbound pieces: queue key and sealing, message preparation, DKIM, DSN, MX routing."""

from __future__ import annotations

import stat
from datetime import UTC, datetime
from pathlib import Path

import dkim
import pytest
import pytest_twisted
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import reactor

from mailiverse.dns import Resolver
from mailiverse.outbound.bounce import FailedRecipient, build_dsn, enhanced_status
from mailiverse.outbound.dkim import dkim_dns_record, dkim_key_path, dkim_record_name, sign_message
from mailiverse.outbound.errors import QueuedBodyUnreadable, QueueKeyError, SubmissionRejected
from mailiverse.outbound.message import normalize_address, prepare_message, smtp_data
from mailiverse.outbound.queuekey import QueueCipher, load_or_create_queue_key, queue_key_path
from mailiverse.outbound.transport import RouteError, mail_hosts
from tests.support.dnsserver import SERVFAIL, DnsServer
from tests.support.outbound import message, parse


def test_queue_key_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    """The queue key is 32 bytes in keys/queue.key, owner-only, and the same on the next load."""
    key = load_or_create_queue_key(tmp_path / "keys")
    path = queue_key_path(tmp_path / "keys")
    assert len(key) == 32 and path.read_bytes() == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_queue_key(tmp_path / "keys") == key
    assert [p.name for p in (tmp_path / "keys").iterdir()] == ["queue.key"]


def test_malformed_queue_key_names_the_file(tmp_path: Path) -> None:
    """A truncated queue key is refused with an error naming its path."""
    keys = tmp_path / "keys"
    keys.mkdir()
    queue_key_path(keys).write_bytes(b"short")
    with pytest.raises(QueueKeyError, match="queue.key"):
        load_or_create_queue_key(keys)


def test_sealed_body_opens_only_under_its_queue_id_and_key(tmp_path: Path) -> None:
    """Sealing round-trips; another queue id, another key or one flipped bit all give the same generic error."""
    cipher = QueueCipher(b"k" * 32)
    blob = cipher.seal("abc", b"secret body")
    assert b"secret body" not in blob
    assert cipher.open("abc", blob) == b"secret body"
    flipped = blob[:-1] + bytes([blob[-1] ^ 1])
    attempts = [
        lambda: cipher.open("abd", blob),
        lambda: QueueCipher(b"j" * 32).open("abc", blob),
        lambda: cipher.open("abc", flipped),
        lambda: cipher.open("abc", b"MVQ1"),
    ]
    messages = set()
    for attempt in attempts:
        with pytest.raises(QueuedBodyUnreadable) as caught:
            attempt()
        messages.add(str(caught.value))
    assert len(messages) == 1


@pytest.mark.parametrize(
    ("given_address", "expected"),
    [
        ("Bob@Remote.TEST", ("Bob@remote.test", "remote.test")),
        ("<bob@bücher.example>", ("bob@xn--bcher-kva.example", "xn--bcher-kva.example")),
        ("first.last+tag@sub.remote.test", ("first.last+tag@sub.remote.test", "sub.remote.test")),
    ],
)
def test_addresses_are_normalised(given_address: str, expected: tuple[str, str]) -> None:
    """Domains become lower-case A-labels; the local part is kept as given."""
    assert normalize_address(given_address) == expected


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "bob",
        "@remote.test",
        "bob@",
        "bob@localhost",
        "bo b@remote.test",
        "bob@remote.test\r\nDATA",
        "bob..x@remote.test",
        ".bob@remote.test",
        "bob@[127.0.0.1]",
        "bøb@remote.test",
        "a" * 65 + "@remote.test",
        "b@" + "x" * 250 + ".test",
    ],
)
def test_bad_addresses_are_rejected(bad: str) -> None:
    """Anything but a plain ASCII local@fqdn address is refused."""
    with pytest.raises(SubmissionRejected):
        normalize_address(bad)


def test_prepare_strips_bcc_and_adds_missing_date_and_message_id() -> None:
    """Bcc never leaves; LF line endings become CRLF; Date and Message-ID are added only when absent."""
    raw = b"From: a@example.com\nBcc: hidden@remote.test\nSubject: s\n\nbody\n"
    prepared = prepare_message(raw, sender_domain="example.com", now=datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC))
    parsed = parse(prepared)
    assert parsed["Bcc"] is None and b"hidden" not in prepared
    assert parsed["Date"] == "Tue, 02 Jan 2024 03:04:05 +0000"
    assert parsed["Message-ID"].endswith("@example.com>")
    assert b"\n" not in prepared.replace(b"\r\n", b"")
    kept = prepare_message(message(), sender_domain="example.com")
    assert parse(kept)["Message-ID"] == "<hello@example.com>"
    assert kept.count(b"Date:") == 1


@given(st.lists(st.text(alphabet=".ab\r\n", max_size=12), max_size=8))
def test_smtp_data_is_dot_stuffed_and_round_trips(lines: list[str]) -> None:
    """Every line starting with a dot is stuffed; undoing the stuffing gives back the CRLF-normalised text."""
    body = "\n".join(lines).encode()
    data = smtp_data(body)
    assert data.endswith(b"\r\n")
    out_lines = data[:-2].split(b"\r\n")
    assert all(not line.startswith(b".") or line.startswith(b"..") for line in out_lines)
    unstuffed = b"\r\n".join(line[1:] if line.startswith(b".") else line for line in out_lines)
    normalised = body.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    assert unstuffed == (normalised[:-2] if normalised.endswith(b"\r\n") else normalised)


def test_dkim_key_record_and_signature_verify(tmp_path: Path) -> None:
    """A generated 2048-bit key (0600) signs relaxed/relaxed sha256; dkimpy verifies via the published record;
    a changed Subject fails."""
    keys = tmp_path / "keys"
    record = dkim_dns_record("Example.COM", "sel", keys_dir=keys)
    assert record.startswith("v=DKIM1; k=rsa; p=")
    path = dkim_key_path(keys, "example.com")
    assert path.name == "dkim-example.com.key.pem" and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert dkim_record_name("example.com", "sel") == "sel._domainkey.example.com"
    signed = sign_message(
        prepare_message(message(), sender_domain="example.com"),
        domain="example.com",
        selector="sel",
        private_key_pem=path.read_bytes(),
    )
    header = parse(signed)["DKIM-Signature"]
    tags = {k.strip(): v.strip() for k, v in (t.split("=", 1) for t in header.replace("\r\n", "").split(";"))}
    assert (
        tags["a"] == "rsa-sha256"
        and tags["c"] == "relaxed/relaxed"
        and tags["d"] == "example.com"
        and tags["s"] == "sel"
    )
    signed_fields = [h.strip().lower() for h in tags["h"].split(":")]
    for name in ("from", "to", "subject", "date", "message-id", "mime-version", "content-type"):
        assert name in signed_fields
    assert signed_fields.count("from") == 2  # over-signed: a second From breaks the signature

    def dns(name: bytes, timeout: int = 5) -> bytes | None:
        return record.encode() if name.decode().rstrip(".") == "sel._domainkey.example.com" else None

    assert dkim.verify(signed, dnsfunc=dns)
    assert not dkim.verify(signed.replace(b"Subject: hello", b"Subject: hellO"), dnsfunc=dns)
    assert not dkim.verify(
        signed.replace(b"From: Alice", b"From: Mallory <m@evil.test>\r\nFrom: Alice", 1), dnsfunc=dns
    )


def test_dkim_key_path_refuses_path_tricks(tmp_path: Path) -> None:
    """A domain that is not a host name cannot choose the key file's path."""
    with pytest.raises(ValueError):
        dkim_key_path(tmp_path, "../../etc/passwd")


def test_dsn_is_an_rfc3464_report() -> None:
    """The report is multipart/report with a human part, per-recipient delivery-status fields
    and the original headers."""
    report = build_dsn(
        reporting_mta="mx.example.com",
        sender="alice@example.com",
        sender_domain="example.com",
        failures=[
            FailedRecipient("bob@remote.test", "5.1.1", "550 5.1.1 unknown\r\nInjected: yes", "smtp.remote.test")
        ],
        arrival=datetime(2024, 1, 1, tzinfo=UTC),
        original=b"Subject: original\r\nFrom: alice@example.com\r\n\r\nthe body stays out\r\n",
    )
    parsed = parse(report)
    assert parsed.get_content_type() == "multipart/report"
    assert parsed["Auto-Submitted"] == "auto-replied"
    _, status, headers = parsed.get_payload()  # type: ignore[misc]
    per_message, per_recipient = status.get_payload()
    assert per_message["Reporting-MTA"] == "dns; mx.example.com"
    assert per_recipient["Final-Recipient"] == "rfc822; bob@remote.test"
    assert per_recipient["Status"] == "5.1.1" and per_recipient["Action"] == "failed"
    assert per_recipient["Remote-MTA"] == "dns; smtp.remote.test"
    assert per_recipient["Diagnostic-Code"] == "smtp; 550 5.1.1 unknown Injected: yes"
    assert "Subject: original" in headers.get_payload() and b"the body stays out" not in report


@pytest.mark.parametrize(
    ("code", "text", "expired", "status"),
    [
        (550, "5.1.1 no such user", False, "5.1.1"),
        (554, "rejected", False, "5.0.0"),
        (451, "4.3.0 later", True, "5.4.7"),
        (550, "4.1.1 odd server", False, "5.0.0"),
    ],
)
def test_enhanced_status(code: int, text: str, expired: bool, status: str) -> None:
    """A bounce carries the server's 5.x.x code, else one from the reply class; expiry is 5.4.7."""
    assert enhanced_status(code, text, expired=expired) == status


@pytest_twisted.ensureDeferred
async def test_mail_hosts_follow_rfc5321(dns_server: DnsServer) -> None:
    """Against a real DNS server: MX by preference; no MX means the domain itself if it has an address; null MX,
    NXDOMAIN and a domain without MX or address are permanent failures, a SERVFAIL a temporary one."""
    dns_server.zone.update(
        {
            "multi.test": {"MX": [[20, "b.multi.test"], [10, "a.multi.test"], [20, "b.multi.test"]]},
            "nullmx.test": {"MX": [[0, ""]]},
            "bare.test": {"A": ["192.0.2.1"]},
            "empty.test": {"TXT": ["no mail here"]},
        }
    )
    resolver = Resolver([dns_server.address], reactor=reactor)
    assert await mail_hosts(resolver, "multi.test") == ["a.multi.test", "b.multi.test"]
    assert await mail_hosts(resolver, "bare.test") == ["bare.test"]
    for domain in ("nullmx.test", "gone.test", "empty.test"):
        with pytest.raises(RouteError) as caught:
            await mail_hosts(resolver, domain)
        assert caught.value.permanent
    with pytest.raises(RouteError) as caught:
        await mail_hosts(resolver, SERVFAIL)
    assert not caught.value.permanent
