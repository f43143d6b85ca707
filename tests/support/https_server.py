"""A real HTTPS server on 127.0.0.1 for the tests of outbound fetches (``mailiverse.webfetch``, MTA-STS): a
``twisted.web`` site with answers given as data, served with a certificate the test chooses."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from twisted.internet import reactor, ssl
from twisted.web import resource, server

from mailiverse.testing import IssuedCertificate
from mailiverse.tls import Issuer, build_certificate
from tests.support.harness import free_port


def issue_certificate(directory: Path, names: list[str], ca_name: str) -> IssuedCertificate:
    """A CA called ``ca_name`` and a certificate it signs for ``names``: OpenSSL finds an issuer by its name, so
    two test CAs trusted at once need names of their own (``issue_test_certificate`` names every CA alike)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = build_certificate(ca_key, ca_name, days=30, ca=True)
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = build_certificate(
        leaf_key, names[0], [x509.DNSName(n) for n in names], days=30, issuer=Issuer(ca_cert.subject, ca_key)
    )
    pem = serialization.Encoding.PEM
    issued = IssuedCertificate(directory / "leaf.crt", directory / "leaf.key", directory / "ca.crt")
    issued.cert_path.write_bytes(leaf.public_bytes(pem) + ca_cert.public_bytes(pem))
    issued.key_path.write_bytes(
        leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    issued.ca_cert_path.write_bytes(ca_cert.public_bytes(pem))
    return issued


@dataclass(frozen=True)
class Answer:
    """What one path answers: a status, a Content-Type and a body, or ``hang`` (headers never come), or
    ``stream`` bytes sent in 16 KiB chunks without a Content-Length."""

    status: int = 200
    content_type: str = "application/json"
    body: bytes = b"{}"
    hang: bool = False
    stream: int = 0
    headers: tuple[tuple[str, str], ...] = ()


@dataclass
class Seen:
    """One request the server received."""

    path: bytes
    host: bytes | None
    accept: bytes | None


@dataclass
class _Routes(resource.Resource):
    answers: dict[str, Answer]
    seen: list[Seen]
    isLeaf = True  # noqa: N815 - twisted.web's name

    def __post_init__(self) -> None:
        resource.Resource.__init__(self)

    def render_GET(self, request: Any) -> Any:  # noqa: N802 - twisted.web's name
        self.seen.append(Seen(request.uri, request.getHeader(b"host"), request.getHeader(b"accept")))
        answer = self.answers.get(request.path.decode("ascii", "replace"))
        if answer is None:
            request.setResponseCode(404)
            return b"not here"
        if answer.hang:
            return server.NOT_DONE_YET
        request.setResponseCode(answer.status)
        request.setHeader(b"content-type", answer.content_type.encode())
        for name, value in answer.headers:
            request.setHeader(name.encode(), value.encode())
        if answer.stream:
            chunk = b"x" * 16384
            for _ in range(answer.stream // len(chunk) + 1):
                request.write(chunk)
            request.finish()
            return server.NOT_DONE_YET
        return answer.body


@dataclass
class HttpsServer:
    """A listening server; change ``answers`` while it serves; ``seen`` lists the requests."""

    port: int
    answers: dict[str, Answer]
    seen: list[Seen]
    _listening: Any
    _site: Any = field(repr=False, default=None)

    async def stop(self) -> None:
        await self._listening.stopListening()


def start_https_server(cert: Path, key: Path, answers: dict[str, Answer] | None = None) -> HttpsServer:
    """Serve ``answers`` over TLS with the certificate (the first one in ``cert``) and ``key``, on a free port."""
    routes = _Routes(dict(answers or {}), [])
    site = server.Site(routes)
    site.displayTracebacks = False
    context = ssl.DefaultOpenSSLContextFactory(str(key), str(cert))
    port = free_port()
    listening = reactor.listenSSL(port, site, context, interface="127.0.0.1")  # type: ignore[attr-defined]
    return HttpsServer(port, routes.answers, routes.seen, listening, site)
