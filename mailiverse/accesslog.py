"""The HTTP access log: one line per request of method, route template, status, size and duration.

Twisted's own access log (the Combined Log Format) writes the client's address, the whole path
with its query, the Referer and the User-Agent: the addresses a user looks up, the names of their
folders and objects. This one writes what running the server needs and nothing a user typed:

    GET /api/keys/<address> 200 612B 4ms

The route template comes from the front end that owns the routes (``route_template``); a request
no route matched is logged as ``<unmatched>``, and a method outside the usual ones as ``OTHER``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from weakref import WeakKeyDictionary

from twisted.web.server import Site

from mailiverse.logs import Logger

log = Logger()

#: The route of a request that matched none (or that failed before routing).
UNMATCHED = "<unmatched>"
_METHODS = frozenset({b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH"})

#: Gives the template of the route a finished request took (``/api/store/<path>``); never raises.
RouteTemplate = Callable[[Any], str]


def _unmatched(request: Any) -> str:
    return UNMATCHED


def logged_method(request: Any) -> str:
    """The request's method, or ``OTHER``: a made-up method is text the client chose."""
    method = request.method
    return method.decode("ascii") if method in _METHODS else "OTHER"


class AccessLogSite(Site):
    """A ``Site`` whose access log is one event per finished request, by route template (see the module)."""

    def __init__(self, resource: Any, *, route_template: RouteTemplate = _unmatched, **kwargs: Any) -> None:
        super().__init__(resource, **kwargs)
        self.route_template = route_template
        self._started: WeakKeyDictionary[Any, float] = WeakKeyDictionary()

    def getResourceFor(self, request: Any) -> Any:
        self._started[request] = self.reactor.seconds()
        return super().getResourceFor(request)

    def log(self, request: Any) -> None:
        started = self._started.pop(request, None)
        try:
            route = self.route_template(request)
        except Exception:  # noqa: BLE001 - a log line must never fail a request
            route = UNMATCHED
        duration = "-" if started is None else f"{max(0, round((self.reactor.seconds() - started) * 1000))}ms"
        log.info(
            "{method} {route} {status} {size}B {duration}",
            method=logged_method(request),
            route=route,
            status=int(request.code),
            size=int(request.sentLength),
            duration=duration,
        )


__all__ = ["UNMATCHED", "AccessLogSite", "RouteTemplate", "logged_method"]
