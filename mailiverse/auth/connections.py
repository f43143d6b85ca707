"""Caps on open connections, in all and per client, shared by the SMTP and HTTPS listeners.

A client is what the login limits call one (``address_key``): an IPv4 address, or an IPv6 /64,
because one host or site usually holds a whole /64 and could otherwise open a connection from each
of its addresses. ``ConnectionLimiter`` only counts; the SMTP receiver asks it itself so it can
answer ``421`` first, and ``LimitedFactory`` puts it in front of any other listener, refusing
before the wrapped protocol (a TLS handshake, say) is ever built.
"""

from __future__ import annotations

from collections import Counter

from twisted.internet.interfaces import IAddress, IProtocol, IProtocolFactory
from twisted.internet.protocol import connectionDone
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure

from mailiverse.auth.ratelimit import address_key


def connection_key(host: str) -> str:
    """The client a connection from ``host`` counts against: ``address_key``, or the text itself
    for a peer that is not an IP address (a UNIX socket, say)."""
    try:
        return address_key(host)
    except ValueError:
        return host


def peer_host(address: IAddress | None) -> str:
    """The host text of a peer address (``str(address)`` when it has none, e.g. a UNIX socket)."""
    host = getattr(address, "host", None)
    return host if isinstance(host, str) else str(address)


class ConnectionLimiter:
    """Counts open connections in all and per client; ``admit`` refuses past either cap.

    One instance may serve several listeners, which then share their caps. It lives on the reactor
    thread and holds one counter per client with a connection open, so its memory is bounded by
    ``max_connections``.
    """

    def __init__(self, max_connections: int, max_per_address: int) -> None:
        if max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, got {max_connections!r}")
        if max_per_address < 1:
            raise ValueError(f"max_per_address must be at least 1, got {max_per_address!r}")
        self.max_connections = max_connections
        self.max_per_address = max_per_address
        self.open = 0
        self._by_key: Counter[str] = Counter()

    def admit(self, host: str) -> str | None:
        """Count a new connection from ``host``: the key to ``release`` it with, or None (not counted) over a cap."""
        key = connection_key(host)
        if self.open >= self.max_connections or self._by_key[key] >= self.max_per_address:
            return None
        self.open += 1
        self._by_key[key] += 1
        return key

    def release(self, key: str) -> None:
        """Forget a connection counted by ``admit``."""
        self.open -= 1
        self._by_key[key] -= 1
        if self._by_key[key] <= 0:
            del self._by_key[key]

    def open_from(self, host: str) -> int:
        """How many connections the client of ``host`` has open."""
        return self._by_key.get(connection_key(host), 0)


class _CountedProtocol(ProtocolWrapper):
    """Gives its slot back when the connection is lost, once."""

    def __init__(self, factory: LimitedFactory, wrapped: IProtocol, limiter: ConnectionLimiter, key: str) -> None:
        super().__init__(factory, wrapped)
        self._limiter = limiter
        self.connection_key: str | None = key

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        key, self.connection_key = self.connection_key, None
        if key is None:
            return  # reported already
        self._limiter.release(key)
        super().connectionLost(reason)


class LimitedFactory(WrappingFactory[_CountedProtocol]):
    """Wraps a listener's factory; a connection over a cap is refused before the wrapped protocol exists.

    ``buildProtocol`` then returns None, and the reactor closes the accepted socket without reading or
    writing a byte: on a TLS listener no handshake is spent on it. The client sees the connection close.
    """

    def __init__(self, wrapped: IProtocolFactory, limiter: ConnectionLimiter) -> None:
        super().__init__(wrapped)
        self.limiter = limiter

    def buildProtocol(self, addr: IAddress) -> _CountedProtocol | None:  # type: ignore[override]
        key = self.limiter.admit(peer_host(addr))
        if key is None:
            return None
        wrapped = self.wrappedFactory.buildProtocol(addr)
        if wrapped is None:
            self.limiter.release(key)
            return None
        return _CountedProtocol(self, wrapped, self.limiter, key)
