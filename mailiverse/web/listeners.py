"""The web listeners' protocol factories: TLS from the first byte, behind the connection caps.

A connection over a cap is closed before the TLS handshake (``LimitedFactory``): refusing costs
the server no handshake, and an HTTP 503 would need one. Browsers open about six connections to a
host, and the legacy client adds its WebSockets, so the per-address cap is far above SMTP's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.internet.interfaces import IProtocolFactory
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.web.server import Site

from mailiverse.auth.connections import ConnectionLimiter, LimitedFactory


@dataclass(frozen=True)
class WebLimits:
    """Connection caps of the web listeners (the HTTPS ones share one count)."""

    #: simultaneous connections on the HTTPS listeners together
    max_connections: int = 1000
    #: simultaneous connections from one client: an IPv4 address or an IPv6 /64
    max_connections_per_address: int = 32

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if value <= 0:
                raise ValueError(f"WebLimits.{name} must be positive, got {value!r}")

    def limiter(self) -> ConnectionLimiter:
        """The count of the HTTPS listeners: in all and per client."""
        return ConnectionLimiter(self.max_connections, self.max_connections_per_address)

    def plain_limiter(self) -> ConnectionLimiter:
        """The count of the ``--web-plain`` listeners: in all only, since behind the TLS proxy they
        serve, every connection comes from the proxy's address (the proxy caps its clients)."""
        return ConnectionLimiter(self.max_connections, self.max_connections)


def https_listener_factory(site: Site, creator: Any, connections: ConnectionLimiter) -> IProtocolFactory:
    """The factory of one HTTPS listener: ``site`` over TLS (``creator``), counted by ``connections``."""
    factory: IProtocolFactory = LimitedFactory(TLSMemoryBIOFactory(creator, False, site), connections)
    return factory


def plain_listener_factory(site: Site, connections: ConnectionLimiter) -> IProtocolFactory:
    """The factory of one ``--web-plain`` listener: ``site`` counted by ``connections``."""
    factory: IProtocolFactory = LimitedFactory(site, connections)
    return factory
