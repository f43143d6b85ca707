"""Baseline: a plain Twisted ESMTP server with STARTTLS that accepts every message and throws it away.

No parsing, no crypto beyond TLS, no store: what Twisted's SMTP line handling and TLS cost on their own.
Run: ``python -m bench.discard_server PORT CERT_PEM KEY_PEM``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from twisted.internet import defer, endpoints, reactor, ssl
from twisted.mail import smtp
from zope.interface import implementer


@implementer(smtp.IMessage)
class _Discard:
    def lineReceived(self, line: bytes) -> None:  # noqa: N802 - Twisted's interface
        pass

    def eomReceived(self) -> defer.Deferred[None]:  # noqa: N802
        return defer.succeed(None)

    def connectionLost(self) -> None:  # noqa: N802
        pass


@implementer(smtp.IMessageDelivery)
class _AcceptAll:
    def receivedHeader(self, helo: Any, origin: Any, recipients: Any) -> bytes:  # noqa: N802
        return b"Received: by discard.bench.test"

    def validateFrom(self, helo: Any, origin: Any) -> Any:  # noqa: N802
        return origin

    def validateTo(self, user: Any) -> Any:  # noqa: N802
        return _Discard


class DiscardFactory(smtp.SMTPFactory):
    """Builds ESMTP protocols that offer STARTTLS and discard every message."""

    def __init__(self, tls: ssl.CertificateOptions) -> None:
        super().__init__()
        self._tls = tls

    def buildProtocol(self, addr: Any) -> smtp.ESMTP:  # noqa: N802
        protocol = smtp.ESMTP(contextFactory=self._tls)
        protocol.factory = self
        protocol.delivery = _AcceptAll()  # type: ignore[assignment]  # Twisted annotates it as None
        protocol.host = b"discard.bench.test"
        return protocol


def main(argv: list[str]) -> None:
    port, cert, key = int(argv[1]), Path(argv[2]), Path(argv[3])
    pem = cert.read_bytes() + key.read_bytes()
    options = ssl.PrivateCertificate.loadPEM(pem).options()
    endpoint = endpoints.TCP4ServerEndpoint(reactor, port, backlog=512, interface="127.0.0.1")
    endpoint.listen(DiscardFactory(options))
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main(sys.argv)
