"""HTTP-01 challenge answers (RFC 8555 §8.3), served on the plain-HTTP port at ``/.well-known/acme-challenge/``.

Everything else on that port is redirected to HTTPS, so port 80 never serves the API.
"""

from __future__ import annotations

import io
import re
from typing import Any

from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from mailiverse.accesslog import AccessLogSite

#: Tokens are base64url with at least 128 bits of entropy; anything else is not ours to answer.
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,128}$")
MAX_PENDING = 100


class ChallengeStore:
    """The key authorizations the ACME client has asked to be served, by token."""

    def __init__(self) -> None:
        self._pending: dict[str, str] = {}

    def put(self, token: str, key_authorization: str) -> None:
        if not _TOKEN.match(token):
            raise ValueError("an ACME token is base64url text")
        if len(self._pending) >= MAX_PENDING and token not in self._pending:
            raise ValueError("too many ACME challenges pending")
        self._pending[token] = key_authorization

    def remove(self, token: str) -> None:
        self._pending.pop(token, None)

    def get(self, token: str) -> str | None:
        return self._pending.get(token) if _TOKEN.match(token) else None

    def __len__(self) -> int:
        return len(self._pending)


class ChallengeResource(Resource):
    """Answers ``GET /.well-known/acme-challenge/<token>`` with the key authorization, 404 otherwise."""

    isLeaf = True

    def __init__(self, store: ChallengeStore) -> None:
        super().__init__()
        self._store = store

    def render_GET(self, request: Any) -> bytes:
        path = request.postpath
        answer = self._store.get(path[0].decode("ascii", "replace")) if len(path) == 1 else None
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
    def __init__(self, store: ChallengeStore, https_port: int) -> None:
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


def acme_http_resource(store: ChallengeStore, https_port: int = 443) -> Resource:
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


def acme_http_site(store: ChallengeStore, https_port: int = 443) -> Site:
    """The Site of the plain-HTTP port, logging routes, never tokens or the paths it redirects; bodies are dropped."""
    return AccessLogSite(
        acme_http_resource(store, https_port), route_template=route_template, requestFactory=_NoBodyRequest
    )
