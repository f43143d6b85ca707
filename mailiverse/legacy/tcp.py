"""The KeyServer and MailServer on TCP: newline framing with a line limit, an idle timeout, one session each."""

from __future__ import annotations

from typing import Any

from twisted.internet.protocol import Factory, Protocol
from twisted.protocols.policies import TimeoutMixin

from mailiverse.auth.forwarded import UNKNOWN_PEER, peer_address
from mailiverse.compat.packets import LineSplitter, LineTooLong
from mailiverse.legacy.backend import LegacyBackend
from mailiverse.legacy.session import LineDriver, LineSession, Role


def peer_host(transport: Any) -> str:
    """The client's IP address as text (UNKNOWN_PEER when the transport has none).

    The line protocol is raw TCP: no proxy forwards a client here, so the peer is the client.
    """
    try:
        address = transport.getPeer()
    except Exception:  # noqa: BLE001 - in-memory transports in tests
        return UNKNOWN_PEER
    return peer_address(address)


class LegacyLineProtocol(Protocol, TimeoutMixin):
    """One connection: split lines (at most the role's limit), drive the session, close when it ends."""

    def __init__(self, role: Role, backend: LegacyBackend, idle_timeout: float) -> None:
        self.role = role
        self.backend = backend
        self.idle_timeout = idle_timeout
        self.driver: LineDriver | None = None
        self.splitter: LineSplitter | None = None

    def _transport(self) -> Any:
        return self.transport

    def connectionMade(self) -> None:
        session = LineSession(self.role, self.backend, peer_host(self.transport))
        self.splitter = LineSplitter(session.max_line)
        self.driver = LineDriver(session, self._transport().write, self._transport().loseConnection)
        self.setTimeout(self.idle_timeout)

    def dataReceived(self, data: bytes) -> None:
        assert self.splitter is not None and self.driver is not None
        self.resetTimeout()
        try:
            lines = self.splitter.feed(data)
        except LineTooLong:
            self.driver.close()
            self._transport().abortConnection()
            return
        for line in lines:
            self.driver.line(line)

    def timeoutConnection(self) -> None:
        if self.driver is not None:
            self.driver.close()
        self._transport().abortConnection()

    def connectionLost(self, reason: Any = None) -> None:
        self.setTimeout(None)
        if self.driver is not None:
            self.driver.close()


class LegacyLineFactory(Factory):
    """Makes :class:`LegacyLineProtocol` for the KeyServer (``"key"``) or MailServer (``"mail"``)."""

    def __init__(self, role: Role, backend: LegacyBackend, *, idle_timeout: float = 45.0, reactor: Any = None) -> None:
        self.role = role
        self.backend = backend
        self.idle_timeout = idle_timeout
        self.reactor = reactor

    def buildProtocol(self, addr: Any) -> LegacyLineProtocol:
        protocol = LegacyLineProtocol(self.role, self.backend, self.idle_timeout)
        if self.reactor is not None:
            protocol.callLater = self.reactor.callLater  # type: ignore[method-assign]
        protocol.factory = self
        return protocol
