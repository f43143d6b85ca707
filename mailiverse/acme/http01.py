"""HTTP-01 challenge answers (RFC 8555 §8.3), served on the plain-HTTP port at ``/.well-known/acme-challenge/``.

Everything else on that port is redirected to HTTPS, so port 80 never serves the API. The answers
wait in an ``IChallengeStore``: this process's memory (``ChallengeStore``), or, for front ends sharing
a metabase, the metabase (``mailiverse.acme.shared``), so the CA's request may reach any of them.
"""

from __future__ import annotations

import io
import re
from collections.abc import Awaitable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site
from zope.interface import Interface, implementer

from mailiverse.accesslog import AccessLogSite
from mailiverse.logs import Logger

_log = Logger()

#: Tokens are base64url with at least 128 bits of entropy; anything else is not ours to answer.
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,128}$")
MAX_PENDING = 100


def is_token(token: str) -> bool:
    """Whether ``token`` looks like an ACME token (base64url, 16 to 128 characters)."""
    return bool(_TOKEN.match(token))


class IChallengeStore(Interface):
    """The key authorizations the ACME client has asked to be served, by token. Every method returns an
    awaitable; ``place`` refuses a malformed token or too many pending ones with ValueError."""

    def place(token: str, key_authorization: str) -> Awaitable[None]:
        """Serve ``key_authorization`` for ``token`` until it is withdrawn (or, shared, expires)."""

    def withdraw(token: str) -> Awaitable[None]:
        """Stop serving ``token``."""

    def lookup(token: str) -> Awaitable[str | None]:
        """The key authorization of ``token``, or None."""


@implementer(IChallengeStore)
class ChallengeStore:
    """The key authorizations the ACME client has asked to be served, by token, in this process's memory."""

    def __init__(self) -> None:
        self._pending: dict[str, str] = {}

    def put(self, token: str, key_authorization: str) -> None:
        if not is_token(token):
            raise ValueError("an ACME token is base64url text")
        if len(self._pending) >= MAX_PENDING and token not in self._pending:
            raise ValueError("too many ACME challenges pending")
        self._pending[token] = key_authorization

    def remove(self, token: str) -> None:
        self._pending.pop(token, None)

    def get(self, token: str) -> str | None:
        return self._pending.get(token) if is_token(token) else None

    def __len__(self) -> int:
        return len(self._pending)

    # IChallengeStore: the same dictionary; nothing waits.

    async def place(self, token: str, key_authorization: str) -> None:
        self.put(token, key_authorization)

    async def withdraw(self, token: str) -> None:
        self.remove(token)

    async def lookup(self, token: str) -> str | None:
        return self.get(token)


class ChallengeResource(Resource):
    """Answers ``GET /.well-known/acme-challenge/<token>`` with the key authorization, 404 otherwise."""

    isLeaf = True

    def __init__(self, store: IChallengeStore) -> None:
        super().__init__()
        self._store = store

    def render_GET(self, request: Any) -> Any:
        path = request.postpath
        token = path[0].decode("ascii", "replace") if len(path) == 1 else ""
        if not is_token(token):
            return _answer(request, None)

        async def look_up() -> str | None:
            answer: str | None = await self._store.lookup(token)
            return answer

        looked_up = Deferred.fromCoroutine(look_up())
        done: list[bytes] = []
        looked_up.addCallback(lambda answer: done.append(_answer(request, answer)))
        if done:  # answered at once (the store in memory): as a plain resource would
            return done[0]
        # A store in the metabase answers from a database thread: finish the request when it does.
        finished = [False]
        request.notifyFinish().addBoth(lambda _: finished.__setitem__(0, True))

        def write(body: bytes) -> None:
            if not finished[0]:
                request.write(body)
                request.finish()

        def failed(failure: Failure) -> None:
            _log.failure("could not look up an ACME challenge", failure)
            if not finished[0]:
                request.setResponseCode(503)
                request.finish()

        looked_up.addCallback(lambda _: write(done[0])).addErrback(failed)
        return NOT_DONE_YET


def _answer(request: Any, answer: str | None) -> bytes:
    if answer is None:
        request.setResponseCode(404)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"no such challenge\n"
    request.setHeader(b"content-type", b"application/octet-stream")
    return answer.encode("ascii")


class _RedirectToHttps(Resource):
    isLeaf = True

    def __init__(self, https_port: int) -> None:
        super().__init__()
        self._port = https_port

    def render(self, request: Any) -> bytes:
        host = (request.getRequestHostname() or b"").decode("ascii", "replace")
        if not re.match(r"^[A-Za-z0-9.-]{1,253}$", host):
            request.setResponseCode(400)
            return b"bad host\n"
        port = "" if self._port == 443 else f":{self._port}"
        path = request.uri.decode("ascii", "replace") if request.uri.startswith(b"/") else "/"
        request.setResponseCode(301)
        request.setHeader(b"location", f"https://{host}{port}{path}".encode("ascii", "replace"))
        return b""


class _Dispatch(Resource):
    def __init__(self, store: IChallengeStore, https_port: int) -> None:
        super().__init__()
        self._challenges = ChallengeResource(store)
        self._redirect = _RedirectToHttps(https_port)

    def getChild(self, path: bytes, request: Any) -> Resource:
        if path == b".well-known" and request.postpath[:1] == [b"acme-challenge"]:
            request.prepath.append(request.postpath.pop(0))
            return self._challenges
        return self._redirect

    def render(self, request: Any) -> bytes:
        return self._redirect.render(request)


def acme_http_resource(store: IChallengeStore, https_port: int = 443) -> Resource:
    """The root resource of the plain-HTTP port: challenge answers, and a redirect to HTTPS for anything else."""
    return _Dispatch(store, https_port)


def route_template(request: Any) -> str:
    """The access-log name of a request on this port: the challenge route, or ``/*`` (redirected)."""
    if request.prepath[:2] == [b".well-known", b"acme-challenge"]:
        return "/.well-known/acme-challenge/<token>"
    return "/*"


class _NoBodyRequest(Request):
    """A request whose body is dropped as it arrives: nothing on this port reads one, and Twisted would
    keep a large one in a plaintext file in the system temp directory."""

    content: Any  # twisted.web's stubs declare it None

    def gotLength(self, length: int | None) -> None:
        self.content = io.BytesIO()

    def handleContentChunk(self, data: bytes) -> None:
        return None


def acme_http_site(store: IChallengeStore, https_port: int = 443) -> Site:
    """The Site of the plain-HTTP port, logging routes, never tokens or the paths it redirects; bodies are dropped."""
    return AccessLogSite(
        acme_http_resource(store, https_port), route_template=route_template, requestFactory=_NoBodyRequest
    )
