"""One client connection to the ESMTP receiver over an in-memory transport, driven by raw bytes.

``make_factory`` builds the receiver as the service does (a settable clock, a spool in a temp dir);
``Session`` feeds it bytes and reads its replies; ``RecordingTLSTransport`` lets it start TLS.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import ITLSTransport
from twisted.internet.testing import MemoryReactorClock, StringTransportWithDisconnection
from zope.interface import implementer

from mailiverse.smtp.limits import SmtpLimits
from mailiverse.smtp.service import smtp_server_factory
from mailiverse.testing import MemoryInbox
from mailiverse.tls import TLSContexts

#: The client's first command in most tests.
GREETING = b"EHLO client.example.org\r\n"


@implementer(ITLSTransport)
class RecordingTLSTransport(StringTransportWithDisconnection):
    """A string transport that can 'start TLS': it records the call and everything received afterwards."""

    def __init__(self, peer: IPv4Address | IPv6Address) -> None:
        super().__init__(peerAddress=peer)
        self.tls_context: Any = None

    def startTLS(self, contextFactory: Any, normal: bool = True) -> None:
        self.tls_context = contextFactory


class Session:
    """One client connection to the server under test, driven by raw bytes."""

    def __init__(self, factory: Any, ip: str = "203.0.113.5", tls_capable: bool = False) -> None:
        peer: IPv4Address | IPv6Address = IPv6Address("TCP", ip, 40000) if ":" in ip else IPv4Address("TCP", ip, 40000)
        self.transport = (
            RecordingTLSTransport(peer) if tls_capable else StringTransportWithDisconnection(peerAddress=peer)
        )
        self.protocol = factory.buildProtocol(peer)
        self.transport.protocol = self.protocol
        self.protocol.makeConnection(self.transport)
        self._seen = 0

    def replies(self) -> list[bytes]:
        """Reply lines written since the last call."""
        out = self.transport.value()[self._seen :]
        self._seen = len(self.transport.value())
        return [line for line in out.split(b"\r\n") if line]

    def send(self, data: bytes) -> list[bytes]:
        self.protocol.dataReceived(data)
        return self.replies()

    @property
    def closed(self) -> bool:
        return not self.transport.connected


def make_factory(
    inbox: MemoryInbox,
    clock: MemoryReactorClock,
    tmp_path: Path,
    tls: TLSContexts | None = None,
    **limits: Any,
) -> Any:
    """The receiver's factory for example.com and bücher.example, on ``clock``, with ``limits`` over the defaults."""
    return smtp_server_factory(
        inbox,
        hostname="mx.example.com",
        limits=SmtpLimits(**limits),
        tls=tls,
        listener_kind="ca",
        implicit_tls=False,
        spool_dir=tmp_path / "spool",
        reactor=clock,
        domains=["example.com", "bücher.example"],
    )
