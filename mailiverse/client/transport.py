"""HTTPS to the appliance with the standard library: certificate pinning (CA file or SHA-256), size caps,
and a recording hook.

One ``HttpsTransport`` keeps one keep-alive connection.  ``--ca`` trusts exactly the given CA or
self-signed certificate (hostname checked); ``--fingerprint`` trusts exactly one certificate by
the SHA-256 of its DER bytes, checked in constant time before any request byte is sent.
Nothing is ever written to disk.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import re
import socket
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlsplit

from mailiverse.client.errors import ConnectionFailed, ServerIdentityError, UsageError

#: The largest response body the client accepts: a 64 MiB store object plus slack.
MAX_RESPONSE_BYTES = 64 * 1024 * 1024 + 64 * 1024
DEFAULT_TIMEOUT_S = 60.0
_FINGERPRINT = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Response:
    """One HTTP response: status, headers (lower-case names) and the whole body."""

    status: int
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True)
class SentRequest:
    """One request as it left the client (what a recording hook sees)."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes | None


class Transport(Protocol):
    """What the client needs from a connection to the server."""

    def request(self, method: str, path: str, body: bytes | None, headers: Mapping[str, str]) -> Response: ...

    def close(self) -> None: ...


def parse_fingerprint(text: str) -> bytes:
    """The 32 bytes of a SHA-256 fingerprint written in hex, with or without colons (any case)."""
    cleaned = text.strip().replace(":", "").lower()
    if not _FINGERPRINT.fullmatch(cleaned):
        raise UsageError("--fingerprint must be a SHA-256 in hex (64 digits, colons optional)")
    return bytes.fromhex(cleaned)


def certificate_fingerprint(der: bytes) -> str:
    """Lower-case hex SHA-256 of a DER certificate."""
    return hashlib.sha256(der).hexdigest()


class _PinnedConnection(http.client.HTTPSConnection):
    """An HTTPS connection that accepts only the certificate whose SHA-256 is ``pin``."""

    def __init__(self, host: str, port: int, *, pin: bytes, timeout: float, context: ssl.SSLContext) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._pin = pin

    def connect(self) -> None:
        super().connect()
        assert isinstance(self.sock, ssl.SSLSocket)
        der = self.sock.getpeercert(binary_form=True) or b""
        if not hmac.compare_digest(hashlib.sha256(der).digest(), self._pin):
            self.sock.close()
            self.sock = None
            raise ServerIdentityError("the server certificate does not match --fingerprint")


def _context(ca_file: str | None, pinned: bool) -> ssl.SSLContext:
    if pinned:
        # The pin replaces chain and name checks: exactly one certificate is trusted.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif ca_file is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        try:
            context.load_verify_locations(cafile=ca_file)
        except (OSError, ssl.SSLError):
            raise UsageError("--ca must name a readable PEM certificate file") from None
    else:
        context = ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class HttpsTransport:
    """Requests over one keep-alive HTTPS connection to ``server`` (an ``https://host[:port]`` URL)."""

    def __init__(
        self,
        server: str,
        *,
        ca_file: str | None = None,
        fingerprint: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        if ca_file is not None and fingerprint is not None:
            raise UsageError("give --ca or --fingerprint, not both")
        parts = urlsplit(server)
        if parts.scheme != "https" or not parts.hostname:
            raise UsageError("--server must be an https:// URL")
        if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username or parts.password:
            raise UsageError("--server is https://HOST[:PORT] with no path, query or credentials")
        try:
            port = parts.port or 443
        except ValueError:
            raise UsageError("--server has a bad port") from None
        self.host = parts.hostname
        self.port = port
        self._pin = parse_fingerprint(fingerprint) if fingerprint is not None else None
        self._context = _context(ca_file, self._pin is not None)
        self._timeout = timeout
        self._max = max_response_bytes
        self._connection: http.client.HTTPSConnection | None = None

    def _connect(self) -> http.client.HTTPSConnection:
        if self._pin is not None:
            return _PinnedConnection(self.host, self.port, pin=self._pin, timeout=self._timeout, context=self._context)
        return http.client.HTTPSConnection(self.host, self.port, timeout=self._timeout, context=self._context)

    def request(self, method: str, path: str, body: bytes | None, headers: Mapping[str, str]) -> Response:
        """Send one request and read the whole answer; a stale keep-alive connection is reopened once."""
        for attempt in (0, 1):
            reused = self._connection is not None
            if self._connection is None:
                self._connection = self._connect()
            connection = self._connection
            try:
                connection.request(method, path, body=body, headers=dict(headers))
                answer = connection.getresponse()
                data = answer.read(self._max + 1)
            except ServerIdentityError:
                self.close()
                raise
            except ssl.SSLCertVerificationError as error:
                self.close()
                raise ServerIdentityError(f"the server certificate is not trusted ({error.verify_message})") from None
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as error:
                self.close()
                if reused and attempt == 0:
                    continue
                raise ConnectionFailed(f"the connection to {self.host} broke ({type(error).__name__})") from None
            except (OSError, http.client.HTTPException) as error:
                self.close()
                reason = error.strerror if isinstance(error, OSError) and error.strerror else type(error).__name__
                if isinstance(error, socket.timeout):
                    reason = "timed out"
                raise ConnectionFailed(f"cannot talk to {self.host}:{self.port} ({reason})") from None
            if len(data) > self._max:
                self.close()
                raise ConnectionFailed("the server sent a response larger than the client accepts")
            if answer.will_close:
                self.close()
            return Response(answer.status, {k.lower(): v for k, v in answer.getheaders()}, data)
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Close the connection (a later request opens a new one)."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None


@dataclass
class RecordingTransport:
    """Wraps a transport and keeps every request it sends, or hands each to ``hook``; for audits and tests."""

    inner: Transport
    hook: Callable[[SentRequest], None] | None = None
    sent: list[SentRequest] = field(default_factory=list)

    def request(self, method: str, path: str, body: bytes | None, headers: Mapping[str, str]) -> Response:
        record = SentRequest(method, path, dict(headers), body)
        self.sent.append(record)
        if self.hook is not None:
            self.hook(record)
        return self.inner.request(method, path, body, headers)

    def close(self) -> None:
        self.inner.close()

    @property
    def bodies(self) -> list[bytes]:
        """Every non-empty request body sent so far."""
        return [r.body for r in self.sent if r.body]
