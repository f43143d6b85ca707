"""A request body as it arrives: its cap decided from the headers, kept in the encrypted spool, refused at once.

Twisted reads a whole body before any resource sees it: into memory or, from 100,000 bytes, into a
plaintext temporary file in the system's TMPDIR (for ``/api/send`` that is the message). The
Site's requests are ``BoundedRequest`` instead:

* the body goes into a ``SpoolFile`` (``mailiverse/spool.py``) in the data directory's ``tmp/``: a
  little of it in memory, the rest AES-CTR ciphertext under a key held only in memory, in a file
  unlinked at once. Routes read ``request.content`` as before.
* its cap is decided when the headers are complete (``gotLength``), before the first body byte:
  ``ANONYMOUS_BODY_BYTES`` unless the request presents a credential, which is then checked (the
  session; under ``/Mailiverse/`` the MV signature) with the connection paused; the route's cap
  applies only if it verifies (``WebBodyGate``). A body within the anonymous cap is never held up.
* a body over its cap is answered at once, in the API's JSON shape (413, or the credential's own
  refusal: 401 or 403), and the connection is closed: nothing past the cap is parsed or kept. A
  client that sends its whole body before it reads can only see the answer if the server does not
  reset the connection under it, so (RFC 9112 section 9.6) a TLS connection sends its close_notify
  and drops what still arrives until the client closes, for ``REFUSAL_GRACE`` seconds at most, then
  is aborted. A plain connection is closed at once.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.web.http import RESPONSES
from twisted.web.server import Request

from mailiverse.auth.sessions import SESSION_COOKIE
from mailiverse.contracts import ANONYMOUS_ALLOWANCE, ANONYMOUS_BODY_BYTES, Allowance, BodyAllowance, IBodyGate
from mailiverse.failures import describe
from mailiverse.logs import Logger
from mailiverse.spool import SpoolFile
from mailiverse.web.errors import ApiError
from mailiverse.web.headers import apply_security_headers
from mailiverse.web.session import RouteBase, request_cookie

log = Logger()

#: Where the legacy routes are mounted (``routes/public.py``).
LEGACY_PREFIX = b"/Mailiverse"
#: Body bytes a request keeps in memory before the spool encrypts the rest to its file.
BODY_MEMORY_BYTES = 64 * 1024
#: Body bytes that may arrive while a credential is checked: the transport is paused, so only what
#: was already read (one socket read, one TLS record) comes in; more means the pause did not hold.
HOLD_WHILE_CHECKING = 256 * 1024
#: Seconds a refused connection may linger (what arrives is dropped) before it is aborted.
REFUSAL_GRACE = 5.0


class BoundedRequest(Request):
    """A request whose body goes to the encrypted spool and never past the allowance of ``body_gate``.

    Set ``body_gate``, ``spool_dir`` and ``tls`` on a subclass (``WebApp.site()`` does).
    """

    #: Decides the allowance of a request whose headers have arrived.
    body_gate: Callable[[Any], Allowance] = staticmethod(lambda request: ANONYMOUS_ALLOWANCE)
    #: The data directory's ``tmp/``: where a body too large for memory goes, encrypted.
    spool_dir: Path | None = None
    #: Whether the Site serves HTTPS (the early refusal carries HSTS then).
    tls: bool = True

    content: Any  # twisted.web's stubs declare it and args None
    args: Any
    oversized = False
    _allowance = ANONYMOUS_ALLOWANCE
    _declared: int | None = None
    _received = 0
    _checking = False
    _held: tuple[bytes, bytes, bytes] | None = None
    _abort_call: Any = None
    _paused = False

    # -- the channel's calls, in the order it makes them -------------------------------------

    def gotLength(self, length: int | None) -> None:
        """The headers are complete and no body byte has been read: decide the allowance."""
        self._learn_request_line()
        self._declared = length
        self._received = 0
        if length == 0:
            self.content = io.BytesIO()
            return
        self.content = self._new_content()
        if length is not None and length <= ANONYMOUS_BODY_BYTES:
            return  # within the anonymous cap whoever sends it: no reason to wait for a check
        decided = self.body_gate(self)
        if isinstance(decided, BodyAllowance):
            self._allowance = decided
            if self._too_large():
                self._refuse(decided)
            return
        self._checking = True
        self._pause(True)  # nothing more is read until the check is done
        checked: Deferred[BodyAllowance] = Deferred.fromCoroutine(decided)
        checked.addErrback(self._check_failed)
        checked.addCallback(self._checked)

    def handleContentChunk(self, data: bytes) -> None:
        if self.oversized:
            return
        self._received += len(data)
        if self._too_large():
            self._refuse(self._allowance)
            return
        self.content.write(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self.oversized:
            return  # answered and closing; nothing of the body is kept
        if self._checking:
            self._held = (command, path, version)  # processed once the credential is checked
            return
        super().requestReceived(command, path, version)

    def connectionLost(self, reason: Failure) -> None:
        if self._abort_call is not None and self._abort_call.active():
            self._abort_call.cancel()
        super().connectionLost(reason)

    # -- the credential check ----------------------------------------------------------------

    def _check_failed(self, failure: Failure) -> BodyAllowance:
        log.error("body allowance check failed: {what}", what=describe(failure.value))
        return ANONYMOUS_ALLOWANCE

    def _checked(self, allowance: BodyAllowance) -> None:
        self._checking = False
        if self._disconnected or self.oversized:
            return
        self._allowance = allowance
        if self._too_large():
            self._refuse(allowance)
            return
        self._pause(False)
        if self._held is not None:
            held, self._held = self._held, None
            super().requestReceived(*held)

    # -- helpers -----------------------------------------------------------------------------

    def _learn_request_line(self) -> None:
        """Take the method, URI and query from the channel now; Twisted sets them only once the body is in."""
        channel = self.channel
        self.method = getattr(channel, "_command", b"") or b""
        self.uri = getattr(channel, "_path", b"") or b""
        self.clientproto = getattr(channel, "_version", b"HTTP/1.1") or b"HTTP/1.1"
        self.path, _, query = self.uri.partition(b"?")
        self.args = parse_qs(query, keep_blank_values=True) if query else {}

    def _pause(self, pause: bool) -> None:
        """Stop (or start again) reading the connection: a paused TCP socket delivers nothing more."""
        if pause == self._paused or self.transport is None:
            return
        self._paused = pause
        if pause:
            self.transport.pauseProducing()  # type: ignore[attr-defined]
        else:
            self.transport.resumeProducing()  # type: ignore[attr-defined]

    def _new_content(self) -> SpoolFile:
        if self.spool_dir is None:
            raise RuntimeError("BoundedRequest.spool_dir is not set: a body must never go to the system temp dir")
        return SpoolFile(self.spool_dir, memory_limit=BODY_MEMORY_BYTES)

    def _too_large(self) -> bool:
        if self._checking:
            return self._received > max(self._allowance.limit, HOLD_WHILE_CHECKING)
        limit = self._allowance.limit
        return self._received > limit or (self._declared is not None and self._declared > limit)

    def _refuse(self, allowance: BodyAllowance) -> None:
        """Answer now, in JSON, and close: nothing of the body is kept, nothing more of the connection parsed."""
        self.oversized = True
        self.content.close()
        self.content = io.BytesIO()
        transport = self.transport
        assert transport is not None
        # No "100 Continue" after this answer, and nothing more of this connection parsed.
        self.requestHeaders.removeHeader(b"expect")
        channel = self.channel
        body = json.dumps({"error": allowance.error, "message": allowance.message}, separators=(",", ":")).encode()
        self.setResponseCode(allowance.status)
        apply_security_headers(self, tls=self.tls)
        self.setHeader(b"Content-Type", b"application/json")
        self.setHeader(b"Cache-Control", b"no-store")
        self.setHeader(b"Content-Length", b"%d" % len(body))
        self.setHeader(b"Connection", b"close")
        if allowance.status == 401:
            self.setHeader(b"WWW-Authenticate", b'Bearer realm="mailiverse"')
        reason = RESPONSES.get(allowance.status, b"Refused")
        channel.writeHeaders(b"HTTP/1.1", b"%d" % allowance.status, reason, self.responseHeaders)
        channel.write(body)
        self.sentLength = len(body)
        site = getattr(channel, "site", None)
        if site is not None:
            site.log(self)
        for name in ("dataReceived", "lineReceived", "rawDataReceived"):
            # As Twisted does for a connection that is not persistent: whatever else arrives is dropped.
            setattr(channel, name, _ignore)
        self._pause(False)  # a TLS connection reads on (and drops) to the client's close
        channel.loseConnection()
        self._abort_call = channel.callLater(REFUSAL_GRACE, transport.abortConnection)  # type: ignore[attr-defined]


def _ignore(*args: object) -> None:
    return None


class WebBodyGate:
    """The body allowance of the web app's requests (``BoundedRequest.body_gate``).

    Under ``/Mailiverse/`` the legacy resource decides, if it provides ``IBodyGate``. Elsewhere a
    route whose cap is above the anonymous one (``route_cap``) allows it only to a request whose
    session (bearer token, or cookie and CSRF token on a write) is live.
    """

    def __init__(self, app: RouteBase, route_cap: Callable[[bytes], int]) -> None:
        self._app = app
        self._route_cap = route_cap

    def __call__(self, request: Any) -> Allowance:
        path: bytes = request.path
        if path.startswith(LEGACY_PREFIX + b"/"):
            gate = IBodyGate(self._app.legacy_resource, None)
            if gate is None:
                return ANONYMOUS_ALLOWANCE
            return gate.body_allowance(request, path[len(LEGACY_PREFIX) :])
        cap = self._route_cap(path)
        if cap <= ANONYMOUS_BODY_BYTES:
            return BodyAllowance(cap)
        if request.getHeader(b"authorization") is None and request_cookie(request, SESSION_COOKIE) is None:
            return ANONYMOUS_ALLOWANCE
        return self._session_allowance(request, cap)

    def _session_allowance(self, request: Any, cap: int) -> Coroutine[Any, Any, BodyAllowance]:
        async def check() -> BodyAllowance:
            try:
                await self._app.session_of(request)
            except ApiError as refused:
                return BodyAllowance(ANONYMOUS_BODY_BYTES, refused.status, refused.code, refused.message)
            return BodyAllowance(cap)

        return check()


__all__ = ["BODY_MEMORY_BYTES", "HOLD_WHILE_CHECKING", "REFUSAL_GRACE", "BoundedRequest", "WebBodyGate"]
