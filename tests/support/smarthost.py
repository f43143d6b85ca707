"""A real SMTP server for tests, built on twisted.mail.smtp: STARTTLS with a test CA, AUTH checked, scripted replies."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twisted.cred import checkers, portal
from twisted.internet import defer, protocol, reactor, ssl
from twisted.mail import smtp
from twisted.mail._cred import LOGINCredentials, PLAINCredentials
from zope.interface import implementer

from mailiverse.testing import issue_test_certificate


@dataclass
class Received:
    """One message as the server stored it for one recipient."""

    mail_from: str
    recipient: str
    data: bytes
    tls: bool
    authenticated_as: str | None


@dataclass
class ServerState:
    """What the server saw and how it should answer."""

    received: list[Received] = field(default_factory=list)
    #: RCPT replies to give, consumed in order per address: (code, text).
    rcpt_replies: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    auth_attempts: list[tuple[str, bool]] = field(default_factory=list)  # (mechanism, over TLS)
    connections: int = 0


@implementer(smtp.IMessage)
class _Message:
    def __init__(self, state: ServerState, record: Received) -> None:
        self._state = state
        self._record = record
        self._lines: list[bytes] = []

    def lineReceived(self, line: bytes) -> None:
        self._lines.append(line)

    def eomReceived(self) -> defer.Deferred[bytes]:
        self._record.data = b"\r\n".join(self._lines) + b"\r\n"
        self._state.received.append(self._record)
        return defer.succeed(b"queued")

    def connectionLost(self) -> None:
        self._lines = []


@implementer(smtp.IMessageDelivery)
class _Delivery:
    def __init__(self, state: ServerState, protocol: _Server | None, user: str | None) -> None:
        self._state = state
        self._protocol = protocol
        self._user = user
        self._from = ""

    def receivedHeader(self, helo: Any, origin: Any, recipients: Any) -> None:
        return None

    def validateFrom(self, helo: Any, origin: smtp.Address) -> smtp.Address:
        self._from = str(origin)
        return origin

    def validateTo(self, user: smtp.User) -> Any:
        address = str(user.dest)
        scripted = self._state.rcpt_replies.get(address)
        if scripted:
            code, text = scripted.pop(0)
            if code >= 300:
                raise smtp.SMTPServerError(code, text)
        record = Received(self._from, address, b"", bool(self._protocol and self._protocol.startedTLS), self._user)
        return lambda: _Message(self._state, record)


class _Server(smtp.ESMTP):
    state: ServerState

    def ext_AUTH(self, rest: bytes) -> None:
        mechanism = rest.split(None, 1)[0].upper().decode("ascii", "replace") if rest else ""
        self.state.auth_attempts.append((mechanism, bool(self.startedTLS)))
        if self.ctx is not None and not self.startedTLS:
            self.sendCode(538, b"5.7.11 Encryption required for requested authentication mechanism")
            return
        smtp.ESMTP.ext_AUTH(self, rest)

    def _cbAuthenticated(self, loginInfo: Any) -> Any:
        result = smtp.ESMTP._cbAuthenticated(self, loginInfo)
        self.delivery._protocol = self
        return result


@implementer(portal.IRealm)
class _Realm:
    def __init__(self, state: ServerState) -> None:
        self.state = state

    def requestAvatar(self, avatar_id: Any, mind: Any, *interfaces: Any) -> Any:
        if smtp.IMessageDelivery in interfaces:
            name = avatar_id.decode() if isinstance(avatar_id, bytes) else str(avatar_id)
            return smtp.IMessageDelivery, _Delivery(self.state, None, name), lambda: None
        raise NotImplementedError()


class _Factory(protocol.ServerFactory):
    def __init__(self, state: ServerState, context: Any, users: dict[str, str], require_auth: bool) -> None:
        self.state = state
        self.context = context
        self.require_auth = require_auth
        self.portal = (
            portal.Portal(
                _Realm(state),
                [checkers.InMemoryUsernamePasswordDatabaseDontUse(**{k: v.encode() for k, v in users.items()})],
            )
            if users
            else None
        )

    def buildProtocol(self, addr: Any) -> _Server:
        self.state.connections += 1
        challengers = {b"LOGIN": LOGINCredentials, b"PLAIN": PLAINCredentials} if self.portal else {}
        server = _Server(challengers, self.context)
        server.state = self.state
        server.host = b"smarthost.test"
        server.factory = self
        if self.portal is not None:
            server.portal = self.portal
        else:
            server.delivery = _Delivery(self.state, server, None)
        return server


@dataclass
class SmtpTestServer:
    """A listening test SMTP server."""

    state: ServerState
    port: Any
    ca_cert: Path | None
    number: int

    async def stop(self) -> None:
        await self.port.stopListening()


def start_server(
    directory: Path,
    *,
    tls: bool = True,
    users: dict[str, str] | None = None,
    names: Iterable[str] = ("localhost",),
) -> SmtpTestServer:
    """Listen on 127.0.0.1 (any free port); ``users`` turns on AUTH and makes it mandatory."""
    context = None
    ca = None
    if tls:
        issued = issue_test_certificate(directory, list(names))
        context = ssl.DefaultOpenSSLContextFactory(str(issued.key_path), str(issued.cert_path))
        ca = issued.ca_cert_path
    state = ServerState()
    factory = _Factory(state, context, users or {}, bool(users))
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")  # type: ignore[attr-defined]
    return SmtpTestServer(state, port, ca, int(port.getHost().port))
