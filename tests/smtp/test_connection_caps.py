"""The SMTP listener's connection caps and junk-command limit over real sockets on the loopback.

Different IPv4 peers are simulated by binding the client to 127.0.0.2, 127.0.0.3, ...; IPv6 uses
``::1`` when the machine has it.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.threads import deferToThread

from mailiverse.smtp.limits import SmtpLimits
from mailiverse.smtp.service import smtp_server_factory
from mailiverse.testing import MemoryInbox
from tests.support.smtp import SmtpSession

TOO_MANY = b"421 4.7.0 Too many connections, try again later"


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


class Listener:
    """An SMTP listener built as the appliance builds it, on a free port of ``interface``."""

    def __init__(self, tmp_path: Path, interface: str = "127.0.0.1", **limits: Any) -> None:
        self.factory = smtp_server_factory(
            MemoryInbox(users={"alice": "alice"}),
            hostname="localhost",
            limits=SmtpLimits(**limits),
            tls=None,
            listener_kind="self-signed",
            implicit_tls=False,
            spool_dir=tmp_path / "spool",
            domains=["example.com"],
        )
        self.port: Any = reactor.listenTCP(0, self.factory, interface=interface)  # type: ignore[attr-defined]
        self.number: int = self.port.getHost().port


@pytest.fixture
def listeners() -> Iterator[list[Listener]]:
    """Listeners a test opens, closed after it."""
    opened: list[Listener] = []
    yield opened
    for listener in opened:
        listener.port.stopListening()


def _first_line(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(512)
        if not chunk:
            break
        data += chunk
    return data.split(b"\r\n", 1)[0]


def _closed(sock: socket.socket) -> bool:
    """True once the server has closed its side (end of stream, or a reset)."""
    try:
        return sock.recv(512) == b""
    except ConnectionResetError:
        return True


@pytest_twisted.ensureDeferred
async def test_noop_loop_gets_421_after_the_junk_limit(tmp_path: Path, listeners: list[Listener]) -> None:
    """With the default limits a client looping on NOOP gets 100 answers, then 421 4.7.0 and the close."""
    listener = Listener(tmp_path)
    listeners.append(listener)

    def loop() -> tuple[list[int], bytes, bool]:
        session = SmtpSession(listener.number, source="127.0.0.2", timeout=10)
        try:
            session.hello()
            answered = [session.command(b"NOOP\r\n")[0] for _ in range(100)]
            code, last = session.command(b"NOOP\r\n")
            assert code == 421
            return answered, last, _closed(session.sock)  # type: ignore[arg-type]
        finally:
            session.close()

    answered, last, closed = await deferToThread(loop)
    assert answered == [250] * 100
    assert last == b"421 4.7.0 Too many commands without mail, closing connection"
    assert closed


@pytest_twisted.ensureDeferred
async def test_per_address_cap_over_real_loopback_addresses(tmp_path: Path, listeners: list[Listener]) -> None:
    """Past the per-address cap 127.0.0.2 gets 421 4.7.0 while 127.0.0.3 is still greeted; a closed
    connection frees its slot."""
    listener = Listener(tmp_path, max_connections_per_ip=2)
    listeners.append(listener)

    def connect() -> dict[str, Any]:
        def open_from(source: str) -> socket.socket:
            return socket.create_connection(("127.0.0.1", listener.number), timeout=10, source_address=(source, 0))

        held = [open_from("127.0.0.2") for _ in range(2)]
        try:
            outcome: dict[str, Any] = {"held": [_first_line(s)[:3] for s in held]}
            with open_from("127.0.0.2") as extra:
                outcome["extra"] = _first_line(extra)
                outcome["extra_closed"] = _closed(extra)
            with open_from("127.0.0.3") as other:
                outcome["other"] = _first_line(other)[:3]
            held.pop().close()
            outcome["after_close"] = _retry_greeting(open_from, "127.0.0.2")
            return outcome
        finally:
            for sock in held:
                sock.close()

    outcome = await deferToThread(connect)
    assert outcome == {
        "held": [b"220", b"220"],
        "extra": TOO_MANY,
        "extra_closed": True,
        "other": b"220",
        "after_close": b"220",
    }


def _retry_greeting(open_from: Any, source: str, attempts: int = 50) -> bytes:
    """The first reply code a new connection from ``source`` gets once the server has seen an earlier close."""
    code = b""
    for _ in range(attempts):
        with open_from(source) as sock:
            code = _first_line(sock)[:3]
        if code == b"220":
            break
    return code


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback (::1) on this machine")
@pytest_twisted.ensureDeferred
async def test_ipv6_loopback_peers_are_counted_per_slash_64(tmp_path: Path, listeners: list[Listener]) -> None:
    """Real connections from ::1 are counted under its /64 (::/64), so the cap of that /64 refuses the extra one."""
    listener = Listener(tmp_path, interface="::1", max_connections_per_ip=2)
    listeners.append(listener)

    def connect() -> tuple[list[bytes], bytes, int]:
        held = [socket.create_connection(("::1", listener.number), timeout=10) for _ in range(2)]
        try:
            greetings = [_first_line(s)[:3] for s in held]
            with socket.create_connection(("::1", listener.number), timeout=10) as extra:
                refused = _first_line(extra)
            # Another address of the same /64 (not one this machine has) is seen as already at its cap.
            return greetings, refused, listener.factory.connection_limiter.open_from("::2")
        finally:
            for sock in held:
                sock.close()

    greetings, refused, same_prefix = await deferToThread(connect)
    assert greetings == [b"220", b"220"]
    assert refused == TOO_MANY
    assert same_prefix == 2
