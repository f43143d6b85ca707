"""One SMTP transaction to one host with Twisted's ESMTP client, reporting a reply for every recipient.

Twisted's ready-made sender factories collapse a transaction into "some recipients worked" or one
exception, and their chunk transform misses dot-stuffing across chunk boundaries; this client
hands over DATA already stuffed and keeps each recipient's own reply, so the queue can tell a
4xx from a 5xx per recipient.  Its session log is never kept, because it would hold AUTH secrets.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any

from OpenSSL import SSL
from twisted.internet import defer
from twisted.internet.endpoints import HostnameEndpoint, connectProtocol
from twisted.internet.protocol import connectionDone
from twisted.mail.smtp import (
    ESMTPClient,
    LOGINAuthenticator,
    PLAINAuthenticator,
    SMTPClientError,
)
from twisted.python.failure import Failure

from mailiverse.outbound.message import smtp_data

DEFAULT_TIMEOUT_S = 120.0
DEFAULT_CONNECT_TIMEOUT_S = 30.0
MAX_REPLY_CHARS = 300


def clean_reply(text: bytes | str | None) -> str:
    """A server reply as one line of printable ASCII, cut short (it ends up in bounces and logs)."""
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    flat = " ".join(text.split())
    return "".join(c if 32 <= ord(c) < 127 else "?" for c in flat)[:MAX_REPLY_CHARS]


@dataclass(frozen=True)
class RecipientResult:
    """The server's final word on one recipient: ``code`` is the SMTP reply code."""

    address: str
    code: int
    text: str

    @property
    def delivered(self) -> bool:
        return 200 <= self.code < 300

    @property
    def permanent(self) -> bool:
        return 500 <= self.code < 600


class TransactionFailed(Exception):
    """The transaction never reached per-recipient replies (connect, greeting, TLS, AUTH, timeout).

    ``code`` is the server's reply code when there was one, else 0; ``tls_failed`` says the TLS
    handshake itself broke, so an opportunistic sender may retry in plain text.
    """

    def __init__(self, code: int, text: str, *, tls_failed: bool = False) -> None:
        super().__init__(f"{code} {text}" if code else text)
        self.code = code
        self.text = text
        self.tls_failed = tls_failed


@dataclass(frozen=True)
class Transaction:
    """What to send, and how: ``tls`` is a client connection creator (or None for no STARTTLS)."""

    host: str
    port: int
    helo: str
    mail_from: str
    recipients: Sequence[str]
    message: bytes
    tls: Any = None
    require_tls: bool = False
    username: bytes | None = None
    password: bytes | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S


class _OutboundClient(ESMTPClient):
    debug = False  # the line log would record AUTH exchanges

    def __init__(self, job: Transaction, done: defer.Deferred[list[RecipientResult]], reactor: Any) -> None:
        ESMTPClient.__init__(self, job.password, job.tls, job.helo.encode("ascii"))
        self.callLater = reactor.callLater  # type: ignore[method-assign]
        self.timeout = job.timeout_s  # type: ignore[assignment]
        self.requireTransportSecurity = job.require_tls
        self.requireAuthentication = job.username is not None
        self.heloFallback = not (job.require_tls or job.username is not None)
        if job.username is not None:
            self.registerAuthenticator(PLAINAuthenticator(job.username))
            self.registerAuthenticator(LOGINAuthenticator(job.username))
        self._job = job
        self._done = done
        self._mail_sent = False
        self._tls_begun = False

    # -- what to send --------------------------------------------------------------------------

    def getMailFrom(self) -> str | None:
        if self._mail_sent:
            return None
        self._mail_sent = True
        return self._job.mail_from

    def getMailTo(self) -> list[str]:
        return list(self._job.recipients)

    def getMailData(self) -> IO[bytes]:
        return io.BytesIO(smtp_data(self._job.message))

    def transformChunk(self, chunk: bytes) -> bytes:
        self.resetTimeout()
        return chunk

    def esmtpState_starttls(self, code: int, resp: bytes) -> None:
        self._tls_begun = True
        ESMTPClient.esmtpState_starttls(self, code, resp)

    # -- outcomes ------------------------------------------------------------------------------

    def sentMail(self, code: int, resp: bytes, numOk: int, addresses: list[Any], log: Any) -> None:
        per_rcpt = {str(a): (int(c), clean_reply(r)) for a, c, r in addresses}
        text = clean_reply(resp)
        results = []
        for address in self._job.recipients:
            rcpt = per_rcpt.get(address)
            if rcpt is not None and not 200 <= rcpt[0] < 300:
                results.append(RecipientResult(address, rcpt[0], rcpt[1]))
            else:
                # Accepted at RCPT (or MAIL FROM failed before any RCPT): the DATA or MAIL reply decides.
                results.append(RecipientResult(address, int(code), text))
        self._finish(results)

    def sendError(self, exc: Exception) -> None:
        ESMTPClient.sendError(self, exc)
        if isinstance(exc, SMTPClientError):
            code = exc.code if isinstance(exc.code, int) and exc.code > 0 else 0
            failure = TransactionFailed(code, clean_reply(exc.resp))
        else:
            failure = TransactionFailed(0, clean_reply(type(exc).__name__))
        self._fail(failure)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        ESMTPClient.connectionLost(self, reason)
        tls_failed = self._tls_begun and reason.check(SSL.Error) is not None
        what = "TLS handshake failed" if tls_failed else "connection closed before the transaction finished"
        self._fail(TransactionFailed(0, what, tls_failed=tls_failed))

    def _finish(self, results: list[RecipientResult]) -> None:
        if not self._done.called:
            self._done.callback(results)

    def _fail(self, error: TransactionFailed) -> None:
        if not self._done.called:
            self._done.errback(error)


async def send_transaction(
    reactor: Any, job: Transaction, *, connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S
) -> list[RecipientResult]:
    """Run one SMTP transaction; a reply per recipient in order, or ``TransactionFailed``."""
    done: defer.Deferred[list[RecipientResult]] = defer.Deferred()
    client = _OutboundClient(job, done, reactor)
    endpoint = HostnameEndpoint(reactor, job.host, job.port, timeout=connect_timeout_s)
    try:
        await connectProtocol(endpoint, client)
    except Exception as error:  # noqa: BLE001 - every connect failure is a temporary one
        raise TransactionFailed(
            0, f"cannot connect to {clean_reply(job.host)}: {clean_reply(type(error).__name__)}"
        ) from None
    return await done
