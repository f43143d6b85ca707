"""CORS for a move's new side (docs/moving.md, "In the web client"): only cookie-less requests, only the routes
a move needs.

The web client of the *old* appliance moves an account by calling the *new* appliance's API from its own page,
so the new appliance must let that origin read its answers. It does so only for requests that carry no cookie:
a move authenticates there with a bearer token from an SRP login (``credentials: 'omit'``), never with the
session cookie. Hence never ``Access-Control-Allow-Credentials``: a browser then sends no cookie cross-origin and
refuses to hand a credentialed answer to the page, so another site can never act with a user's session here.
Answers allow only https origins, only on the routes in ``_ROUTES`` (the SRP login, the account and its key block,
the store objects, digests, brought keys and the move routes), each with its own methods.

A cross-origin login gets no ``Set-Cookie`` (``allows_cookieless_login`` and ``is_cross_origin``): the token in
the answer is the whole session, as for native clients; ``RouteBase.check_origin`` keeps refusing every other
cross-origin request that is not authenticated by a bearer token.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

_ALLOWED_HEADERS = b"Authorization, Content-Type"
#: How long a browser may keep a preflight's answer (seconds).
_MAX_AGE = b"600"

#: (path pattern, methods) of the routes a move calls on the new appliance.
_ROUTES: tuple[tuple[re.Pattern[str], tuple[str, ...]], ...] = (
    (re.compile(r"/api/login/(?:start|finish)"), ("POST",)),
    (re.compile(r"/api/logout"), ("POST",)),
    (re.compile(r"/api/account"), ("GET",)),
    (re.compile(r"/api/account/digests"), ("GET",)),
    (re.compile(r"/api/account/brought-keys"), ("GET", "POST")),
    (re.compile(r"/api/account/move"), ("GET", "POST")),
    (re.compile(r"/api/account/move/(?:copied|finish)"), ("POST",)),
    (re.compile(r"/api/store/.+"), ("GET", "PUT", "POST")),
)
_LOGIN = re.compile(r"/api/login/(?:start|finish)")


def _path(request: Any) -> str:
    return bytes(request.path).decode("latin-1")


def route_methods(path: str) -> tuple[str, ...] | None:
    """The methods a cross-origin caller may use on ``path``, or None: no CORS there."""
    for pattern, methods in _ROUTES:
        if pattern.fullmatch(path):
            return methods
    return None


def _origin(request: Any) -> str | None:
    """The request's Origin when it is another origin than this appliance's own, else None."""
    raw = request.getHeader(b"origin")
    if raw is None:
        return None
    origin: str = bytes(raw).decode("latin-1").strip()
    parsed = urllib.parse.urlsplit(origin.lower())
    host = (request.getHeader(b"host") or b"").decode("latin-1").strip().lower()
    if parsed.netloc == host and parsed.scheme in ("https", "http"):
        return None
    return origin


def is_cross_origin(request: Any) -> bool:
    """Whether a browser sent this request from another origin's page (its cookies must not be set)."""
    return _origin(request) is not None


def _https_origin(origin: str) -> bool:
    parsed = urllib.parse.urlsplit(origin)
    return (
        parsed.scheme == "https"
        and bool(parsed.hostname)
        and origin == f"https://{parsed.netloc}"
        and all(32 < ord(c) < 127 for c in origin)
    )


def _allowed(request: Any) -> tuple[str, tuple[str, ...]] | None:
    """(origin, methods) when this request may be answered with CORS headers."""
    origin = _origin(request)
    if origin is None or not _https_origin(origin) or request.getHeader(b"cookie") is not None:
        return None
    methods = route_methods(_path(request))
    return None if methods is None else (origin, methods)


def allows_cookieless_login(request: Any) -> bool:
    """A cross-origin SRP login without cookies from an https page: allowed (the answer sets no cookie)."""
    return _allowed(request) is not None and _LOGIN.fullmatch(_path(request)) is not None


def apply_cors(request: Any) -> bytes | None:
    """Add the CORS headers this request earns; for a preflight, the whole (empty, 204) answer, else None."""
    if route_methods(_path(request)) is not None:
        request.setHeader(b"Vary", b"Origin")
    allowed = _allowed(request)
    preflight = request.method == b"OPTIONS" and request.getHeader(b"access-control-request-method") is not None
    if allowed is None:
        return None
    origin, methods = allowed
    if preflight:
        wanted = request.getHeader(b"access-control-request-method").decode("latin-1").strip()
        if wanted not in methods:
            return None
    request.setHeader(b"Access-Control-Allow-Origin", origin.encode("ascii"))
    request.setHeader(b"Access-Control-Allow-Methods", ", ".join(methods).encode("ascii"))
    request.setHeader(b"Access-Control-Allow-Headers", _ALLOWED_HEADERS)
    if not preflight:
        return None
    request.setHeader(b"Access-Control-Max-Age", _MAX_AGE)
    request.setResponseCode(204)
    return b""


__all__ = ["allows_cookieless_login", "apply_cors", "is_cross_origin", "route_methods"]
