"""Routes without a session: health, OpenAPI, the MTA-STS policy, the legacy branch, the static client,
and the API's 404/405."""

from __future__ import annotations

from typing import Any

from klein.interfaces import IKleinRequest
from twisted.web.resource import NoResource, Resource
from twisted.web.static import File
from werkzeug.exceptions import HTTPException

from mailiverse import __version__
from mailiverse.web.assets import service_worker
from mailiverse.web.errors import error_response, json_response
from mailiverse.web.routing import router
from mailiverse.web.session import RouteBase

_ALL_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH")
_FALLBACK_ENDPOINTS = frozenset({"api_not_found", "api_not_found_branch", "static", "static_branch"})


class _StaticFiles(File):
    """The web client's files; folders are not listed (a listing maps the client for nobody's benefit)."""

    #: The types the client's files have (a module script must be served as JavaScript); the system's table is
    #: never read (``mailiverse/web/__init__.py``).
    contentTypes = {
        ".html": "text/html",
        ".js": "text/javascript",
        ".mjs": "text/javascript",
        ".css": "text/css",
        ".json": "application/json",
        ".webmanifest": "application/manifest+json",
        ".wasm": "application/wasm",
        ".png": "image/png",
        ".svg": "image/svg+xml",
        ".ico": "image/vnd.microsoft.icon",
        ".txt": "text/plain",
        ".md": "text/plain",
    }

    def directoryListing(self) -> Resource:
        return NoResource("not found")


class PublicRoutes(RouteBase):
    """What anyone may fetch, and the JSON answers for routes and methods that do not exist."""

    @router.route("/api/health", methods=["GET"])
    async def health(self, request: Any) -> bytes:
        return json_response(request, {"status": "ok", "version": __version__, "domains": list(self.domains)})

    @router.route("/api/openapi.json", methods=["GET"])
    async def openapi(self, request: Any) -> bytes:
        # Imported when asked for: the document's builders are a large module few requests need (idle memory).
        from mailiverse.web.openapi import openapi_document

        return json_response(request, openapi_document(__version__))

    @router.route("/api/", branch=True)
    async def api_not_found(self, request: Any) -> bytes:
        allowed = _allowed_methods(request)
        if allowed:
            request.setHeader(b"Allow", ", ".join(allowed).encode("ascii"))
            return error_response(request, "method_not_allowed", "this route does not take that method", 405)
        return error_response(request, "not_found", "no such API route", 404)

    @router.route("/.well-known/mta-sts.txt", methods=["GET", "HEAD"])
    def mta_sts(self, request: Any) -> bytes:
        """The MTA-STS policy (RFC 8461 §3.2), for senders that fetch it from mta-sts.<domain>."""
        if self.mta_sts_policy is None:
            return error_response(request, "not_found", "no MTA-STS policy is published here", 404)
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        request.setHeader(b"Cache-Control", b"max-age=86400")
        return self.mta_sts_policy.encode("ascii")

    @router.route("/Mailiverse/", branch=True)
    def legacy(self, request: Any) -> Any:
        """The original Mailiverse WebSocket and Store routes, when ``--legacy`` is on."""
        if self.legacy_resource is None:
            return error_response(request, "not_found", "the legacy Mailiverse protocol is not enabled", 404)
        return self.legacy_resource

    @router.route("/sw.js", methods=["GET", "HEAD"])
    def service_worker_script(self, request: Any) -> bytes:
        """The client's service worker, naming the files of this release (``mailiverse.web.assets.service_worker``).
        ``no-cache``: a browser must ask each time it checks for a new release, never keep an old worker."""
        try:
            source = service_worker(self.static_dir)
        except FileNotFoundError:
            return error_response(request, "not_found", "this client has no service worker", 404)
        request.setHeader(b"Content-Type", b"text/javascript; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-cache")
        return source

    @router.route("/", branch=True, methods=["GET", "HEAD"])
    def static(self, request: Any) -> Any:
        return _StaticFiles(str(self.static_dir))


def _allowed_methods(request: Any) -> list[str]:
    """The methods some real route takes at this path (for a 405's Allow header)."""
    mapper = IKleinRequest(request).mapper
    allowed = []
    for method in _ALL_METHODS:
        try:
            rule, _args = mapper.match(method=method, return_rule=True)
        except HTTPException:
            continue
        if rule.endpoint not in _FALLBACK_ENDPOINTS:
            allowed.append(method)
    return allowed


__all__ = ["PublicRoutes"]
