"""The web app's ``Site``: the access log by route template, and the peers it trusts as proxies.

``route_template`` names the route a request took as the innermost Klein router that handled it
declared it: ``/api/store/<path>``, ``/api/keys/<address>``, ``/Mailiverse/StoreGet`` (the legacy
router, mounted under the fixed prefix ``/Mailiverse/``). A catch-all branch is ``*`` (``/*`` for
the static client, ``/api/*`` for an unknown API path). The same name goes into the 500 log.
"""

from __future__ import annotations

import re
from typing import Any

from klein.interfaces import IKleinRequest

from mailiverse.accesslog import UNMATCHED, AccessLogSite
from mailiverse.auth.forwarded import NO_PROXIES, TrustedProxies

# A werkzeug rule variable, <name> or <converter(args):name>.
_VARIABLE = re.compile(r"<(?:[A-Za-z_][A-Za-z0-9_]*(?:\([^)>]*\))?:)?([A-Za-z_][A-Za-z0-9_]*)>")


def _placeholder(match: re.Match[str]) -> str:
    name = match.group(1)
    return "*" if name == "__rest__" else f"<{name}>"


def route_template(request: Any) -> str:
    """The template of the route ``request`` took, or ``<unmatched>``; never a value from the request."""
    try:
        mapper = IKleinRequest(request).mapper
        rule, _values = mapper.match(return_rule=True)
    except Exception:  # noqa: BLE001 - no router ran, or none has a route here (404, 405)
        return UNMATCHED
    prefix = str(mapper.script_name).rstrip("/")
    return prefix + _VARIABLE.sub(_placeholder, str(rule.rule))


class WebSite(AccessLogSite):
    """The Site of the web app; ``trusted_proxies`` are the peers whose forwarding headers are believed
    (:func:`mailiverse.auth.forwarded.client_address`): none but on the plain-HTTP listener."""

    def __init__(self, resource: Any, *, trusted_proxies: TrustedProxies = NO_PROXIES, **kwargs: Any) -> None:
        super().__init__(resource, route_template=route_template, **kwargs)
        self.trusted_proxies = trusted_proxies


__all__ = ["WebSite", "route_template"]
