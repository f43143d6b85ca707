"""The WebAuthn relying party a request speaks to: its RP ID and the origins its passkeys may be used from.

WebAuthn binds a passkey to an RP ID, a host name (never an IP address), and checks that the page asking is on
it. The appliance is its relying party under the names it is configured with (``--hostname`` and the
``--domain``s) and under ``localhost`` for local use; a request by any other name (an address, a name the
operator did not configure) gets none, and its logins can use recovery codes only. The origin an assertion must
come from is ``https://`` and the host the request named (with its port), and ``http://`` too for ``localhost``,
which browsers treat as secure.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mailiverse.accounts.secondfactor import RelyingParty

_HOST = re.compile(r"(?P<name>[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?)(?::(?P<port>[0-9]{1,5}))?", re.ASCII)
LOCALHOST = "localhost"


def relying_party(request: Any, hostname: str, domains: Iterable[str]) -> RelyingParty | None:
    """The relying party of ``request`` (by its Host header), or None when the name it used cannot be one."""
    from mailiverse.accounts.secondfactor import RelyingParty

    raw = request.getHeader(b"host")
    if raw is None:
        return None
    host = bytes(raw).decode("latin-1").strip().lower()
    match = _HOST.fullmatch(host)
    if match is None:
        return None
    name = match.group("name").rstrip(".")
    try:
        ipaddress.ip_address(name)
    except ValueError:
        pass
    else:
        return None  # an RP ID is never an address
    configured = {hostname.lower().rstrip("."), *(d.lower().rstrip(".") for d in domains), LOCALHOST}
    if name not in configured:
        return None
    port = match.group("port")
    origins = [f"https://{host}"]
    if port == "443":
        origins.append(f"https://{name}")  # a browser leaves the default port out of the origin
    if name == LOCALHOST:
        origins.append(f"http://{host}" if port != "80" else f"http://{name}")
    return RelyingParty(id=name, name=f"Mailiverse ({hostname})", origins=tuple(origins))


__all__ = ["LOCALHOST", "relying_party"]
