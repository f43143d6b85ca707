"""The KeyServer and MailServer over WebSocket, as the original Tomcat proxy offered them to the web client.

Each client text frame carries one line; anything after its first ``\\n`` is dropped, as the
proxy did.  Each server line goes out as one text frame ending in ``\\n``.  Messages are
limited to 10 KiB (the proxy's limit), binary frames close the connection, and a connection
idle for the role's timeout is dropped. A session's limits count the upgrade request's
``client_address`` (the forwarded client behind a ``--trusted-proxy``).
"""

from __future__ import annotations

from typing import Any

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.web.resource import Resource

from mailiverse.auth.forwarded import client_address
from mailiverse.legacy.backend import LegacyBackend
from mailiverse.legacy.session import LineDriver, LineSession, Role
from mailiverse.legacy.tcp import peer_host

MAX_MESSAGE_BYTES = 10 * 1024


class LegacyWebSocketProtocol(WebSocketServerProtocol):
    """One WebSocket connection driving one :class:`LineSession`."""

    role: Role
    backend: LegacyBackend
    idle_timeout: float
    reactor: Any
    #: The address the upgrade request counted as (``client_address``), set when the protocol is built.
    client_host: str | None = None

    def onOpen(self) -> None:
        session = LineSession(self.role, self.backend, self.client_host or peer_host(self.transport))
        self._max_line = session.max_line
        self._driver = LineDriver(session, self._send_line, self._close)
        self._timer = self.reactor.callLater(self.idle_timeout, self._idle)

    def _send_line(self, line: bytes) -> None:
        self.sendMessage(line, isBinary=False)

    def _close(self) -> None:
        self.sendClose()

    def _idle(self) -> None:
        self._timer = None
        self._driver.close()
        self.dropConnection(abort=True)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.reset(self.idle_timeout)
        if isBinary:
            self._driver.close()
            return
        line = payload.split(b"\n", 1)[0]
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:
            return
        if len(line) > self._max_line:
            self._driver.close()
            return
        self._driver.line(line)

    def onClose(self, wasClean: bool, code: Any, reason: Any) -> None:
        timer = getattr(self, "_timer", None)
        if timer is not None and timer.active():
            timer.cancel()
        driver = getattr(self, "_driver", None)
        if driver is not None:
            driver.close()


class _ForClient:
    """The factory of one upgrade: its protocol knows the client's address before the handshake."""

    def __init__(self, factory: WebSocketServerFactory, client_host: str) -> None:
        self._factory = factory
        self._client_host = client_host

    def buildProtocol(self, addr: Any) -> Any:
        protocol: Any = self._factory.buildProtocol(addr)
        if protocol is not None:
            protocol.client_host = self._client_host
        return protocol


class LegacyWebSocketResource(Resource):
    """Upgrades a request to a legacy line session that counts the request's ``client_address``
    (the forwarded client behind a trusted proxy), not the TCP peer."""

    isLeaf = True

    def __init__(self, factory: WebSocketServerFactory) -> None:
        super().__init__()
        self.factory = factory

    def render(self, request: Any) -> Any:
        return WebSocketResource(_ForClient(self.factory, client_address(request))).render(request)


def websocket_resource(
    role: Role, backend: LegacyBackend, *, idle_timeout: float = 45.0, reactor: Any = None
) -> LegacyWebSocketResource:
    """A twisted.web resource speaking the legacy line protocol of ``role`` over WebSocket."""
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    factory = WebSocketServerFactory()
    factory.setProtocolOptions(
        maxMessagePayloadSize=MAX_MESSAGE_BYTES,
        maxFramePayloadSize=MAX_MESSAGE_BYTES,
        openHandshakeTimeout=10,
        closeHandshakeTimeout=5,
    )
    protocol = type(
        f"LegacyWebSocket_{role}",
        (LegacyWebSocketProtocol,),
        {"role": role, "backend": backend, "idle_timeout": idle_timeout, "reactor": reactor},
    )
    factory.protocol = protocol  # type: ignore[assignment]
    return LegacyWebSocketResource(factory)
