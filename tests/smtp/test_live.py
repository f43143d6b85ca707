"""End-to-end tests of the SMTP listeners on a real 127.0.0.1 port with Python's smtplib and ssl."""

from __future__ import annotations

import smtplib
import socket
import ssl
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.threads import deferToThread

from mailiverse.smtp.limits import SmtpLimits
from mailiverse.smtp.service import smtp_server_factory
from mailiverse.testing import MemoryInbox
from mailiverse.tls import TLSContexts, ensure_self_signed

MESSAGE = b"From: bob@remote.org\r\nTo: alice@example.com\r\nSubject: live\r\n\r\nHello over TLS.\r\n"


class Listener:
    def __init__(self, inbox: MemoryInbox, tls: TLSContexts, tmp_path: Path, implicit: bool) -> None:
        factory = smtp_server_factory(
            inbox,
            hostname="localhost",
            limits=SmtpLimits(),
            tls=tls,
            listener_kind="self-signed",
            implicit_tls=implicit,
            spool_dir=tmp_path / "spool",
            domains=["example.com"],
        )
        self.port: Any = reactor.listenTCP(0, factory, interface="127.0.0.1")  # type: ignore[attr-defined]
        self.number: int = self.port.getHost().port


@pytest.fixture
def pki(tmp_path: Path) -> tuple[TLSContexts, Path]:
    cert, key = ensure_self_signed(tmp_path / "data", "localhost")
    return TLSContexts((cert, key)), cert


def client_context(cafile: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(cafile))
    return context


@pytest_twisted.ensureDeferred
async def test_starttls_with_smtplib(tmp_path: Path, pki: tuple[TLSContexts, Path]) -> None:
    """smtplib upgrades with STARTTLS (verifying the self-signed certificate) and delivers;
    the trace header records TLS."""
    inbox = MemoryInbox(users={"alice": "alice"})
    listener = Listener(inbox, pki[0], tmp_path, implicit=False)

    def send() -> dict[str, Any]:
        with smtplib.SMTP("127.0.0.1", listener.number, local_hostname="client.test", timeout=10) as client:
            client.ehlo()
            assert client.has_extn("starttls")
            client.starttls(context=client_context(pki[1]))
            client.ehlo()
            assert not client.has_extn("starttls")
            return client.sendmail("bob@remote.org", ["ALICE@example.com"], MESSAGE)

    try:
        refused = await deferToThread(send)
    finally:
        await listener.port.stopListening()
    assert refused == {}
    [delivered] = inbox.delivered
    assert delivered.data.endswith(MESSAGE)
    assert b"with ESMTPS id" in delivered.data
    assert b"version=TLSv1.3" in delivered.data


@pytest_twisted.ensureDeferred
async def test_implicit_tls_with_smtplib(tmp_path: Path, pki: tuple[TLSContexts, Path]) -> None:
    """On the implicit-TLS listener the session is TLS from the first byte and STARTTLS is not offered."""
    inbox = MemoryInbox(users={"alice": "alice"})
    listener = Listener(inbox, pki[0], tmp_path, implicit=True)

    def send() -> tuple[bool, dict[str, Any]]:
        with smtplib.SMTP_SSL(
            "localhost",
            listener.number,
            local_hostname="client.test",
            timeout=10,
            context=client_context(pki[1]),
        ) as client:
            client.ehlo()
            offered = client.has_extn("starttls")
            return offered, client.sendmail("bob@remote.org", ["alice@example.com"], MESSAGE)

    try:
        offered, refused = await deferToThread(send)
    finally:
        await listener.port.stopListening()
    assert not offered and refused == {}
    assert inbox.delivered[0].data.endswith(MESSAGE)
    assert b"with ESMTPS id" in inbox.delivered[0].data


def _read_reply(sock: Any) -> bytes:
    data = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            return data
        data += chunk
        lines = data.split(b"\r\n")
        if any(len(line) > 3 and line[3:4] == b" " for line in lines):
            return data


@pytest_twisted.ensureDeferred
async def test_starttls_injection_over_real_tls(tmp_path: Path, pki: tuple[TLSContexts, Path]) -> None:
    """Commands sent in the same packet as STARTTLS get no clear-text reply and have no effect inside TLS."""
    inbox = MemoryInbox(users={"alice": "alice"})
    listener = Listener(inbox, pki[0], tmp_path, implicit=False)

    def attack() -> tuple[bytes, bytes, bytes]:
        with socket.create_connection(("127.0.0.1", listener.number), timeout=10) as raw:
            _read_reply(raw)
            raw.sendall(b"EHLO attacker.test\r\n")
            _read_reply(raw)
            raw.sendall(b"STARTTLS\r\nRSET\r\nMAIL FROM:<evil@x.test>\r\n")
            clear = _read_reply(raw)
            tls = client_context(pki[1]).wrap_socket(raw, server_hostname="localhost")
            tls.sendall(b"RCPT TO:<alice@example.com>\r\n")
            after = _read_reply(tls)
            tls.sendall(b"EHLO attacker.test\r\nMAIL FROM:<a@b.test>\r\n")
            again = _read_reply(tls)
            while b"\r\n250 2.1.0" not in again:
                again += _read_reply(tls)
            tls.sendall(b"QUIT\r\n")
            return clear, after, again

    try:
        clear, after, again = await deferToThread(attack)
    finally:
        await listener.port.stopListening()
    assert clear == b"220 2.0.0 Ready to start TLS\r\n"
    assert after == b"503 5.5.1 Send MAIL first\r\n"
    assert b"STARTTLS" not in again
