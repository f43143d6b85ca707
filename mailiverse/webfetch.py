"""One HTTPS GET of another server's small document (MTA-STS policies, another appliance's discovery), verified
and bounded.

Everything another server says is an answer from a stranger, so :class:`WebFetch` takes no chances with it:

* ``https://`` only; no user name or password in the URL; the port is the URL's own, else ``port`` (443);
* the host's A, then AAAA records come from the appliance's one resolver (``--dns-server``), and those
  addresses are connected to in turn, so no lookup goes around it (as for outbound mail);
* TLS 1.2+ verified against the system's trust roots plus ``--trust-ca``, with the URL's host name sent as
  SNI and checked against the certificate (service_identity, through Twisted);
* no redirects: a 3xx comes back as it is, for the caller to refuse (MTA-STS must, RFC 8461 §3.3);
* at most ``max_bytes`` of body (and a bounded number of bytes in all, headers included), and one deadline
  for the lookup, the connection, the handshake and the whole answer.

The body is handed back as bytes: parsing it (JSON, a policy) is the caller's job, and
:class:`FetchError`'s message names the host and what went wrong, never the URL's path or query.
``twisted.web.client`` loads on the first fetch (idle memory, issue 9).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from OpenSSL import SSL
from twisted.internet import defer
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, wrapClientTLS
from twisted.internet.error import ConnectError
from twisted.internet.interfaces import IProtocolFactory, IStreamClientEndpoint
from twisted.internet.protocol import Protocol, connectionDone
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

from mailiverse.dns import DnsTemporaryError, IDnsResolver, InvalidDnsQuery, check_query
from mailiverse.tls import SystemAndExtraTrust, trust_roots, verified_client_tls

DEFAULT_TIMEOUT_S = 15.0
MAX_URL_CHARS = 2048
#: Addresses tried per host, A records first.
MAX_ADDRESSES = 4
#: Room for the status line and headers on top of the body; a chunked body may also double in size on the wire.
HEADER_ALLOWANCE = 64 * 1024
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-.")


@dataclass(frozen=True)
class Fetched:
    """A server's answer: the status (any, 3xx included), its Content-Type as sent, the whole body."""

    status: int
    content_type: str
    body: bytes


class FetchError(Exception):
    """No answer could be had; the message says why in words fit to show a user (host name, no path, no secret)."""


@dataclass(frozen=True)
class Target:
    """Where a checked URL leads: ``host`` (an A-label name or an IP address), the port, and the URI as sent."""

    host: str
    port: int
    uri: bytes
    is_address: bool


def check_url(url: str, default_port: int = 443) -> Target:
    """``url`` checked for :class:`WebFetch` (:class:`FetchError` otherwise): https, no user information, a host
    that is a DNS name in A-labels or an IP address, a valid port, printable ASCII only; the fragment is dropped."""
    if not isinstance(url, str) or len(url) > MAX_URL_CHARS:
        raise FetchError(f"the URL is longer than {MAX_URL_CHARS} characters")
    if not url.isascii() or any(not 0x21 <= ord(c) <= 0x7E for c in url):
        raise FetchError("the URL has spaces, control characters or characters other than ASCII")
    try:
        parts = urlsplit(url)
        explicit_port = parts.port
    except ValueError:
        raise FetchError("the URL's host or port is malformed") from None
    if parts.scheme.lower() != "https":
        raise FetchError("only https:// URLs are fetched")
    if "@" in parts.netloc:
        raise FetchError("a URL with a user name or password is not fetched")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise FetchError("the URL names no host")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is None:
        if not set(host) <= _HOST_CHARS or any(not label or label[0] == "-" for label in host.split(".")):
            raise FetchError("the URL's host is not a host name (give international names as A-labels)")
        try:
            check_query(host, "A")
        except InvalidDnsQuery as error:
            raise FetchError(f"the URL's host is not a host name: {error}") from None
    if explicit_port == 0:
        raise FetchError("the URL's port is not a port")
    port = explicit_port if explicit_port is not None else default_port
    authority = f"[{host}]" if address is not None and address.version == 6 else host
    if explicit_port is not None:
        authority += f":{explicit_port}"
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(host, port, f"https://{authority}{path}".encode("ascii"), address is not None)


async def host_addresses(resolver: IDnsResolver, host: str, limit: int = MAX_ADDRESSES) -> list[str]:
    """``host``'s IPv4, then IPv6 addresses, asked of ``resolver``, each once, at most ``limit``
    (:class:`FetchError` when DNS fails or the host has none)."""
    addresses: list[str] = []
    for rtype in ("A", "AAAA"):
        try:
            answer = await resolver.lookup(host, rtype)
        except (DnsTemporaryError, InvalidDnsQuery) as error:
            raise FetchError(f"the DNS lookup of {host} failed ({error})") from None
        addresses += [record for record in answer.records if isinstance(record, str)]
    if not addresses:
        raise FetchError(f"{host} has no address in DNS")
    return list(dict.fromkeys(addresses))[:limit]


@implementer(IStreamClientEndpoint)
@dataclass
class _FirstThatAnswers:
    """Connects to the first of ``addresses`` that accepts a TCP connection."""

    reactor: Any
    addresses: Sequence[str]
    port: int
    timeout_s: float

    def connect(self, factory: IProtocolFactory) -> defer.Deferred[Any]:
        return defer.Deferred.fromCoroutine(self._connect(factory))

    async def _connect(self, factory: IProtocolFactory) -> Any:
        for address in self.addresses:
            kind = TCP6ClientEndpoint if ":" in address else TCP4ClientEndpoint
            try:
                return await kind(self.reactor, address, self.port, timeout=self.timeout_s).connect(factory)
            except (ConnectError, OSError):
                continue
        raise ConnectError(string="no address accepted the connection")


@dataclass
class _Budget:
    """Bytes received on one connection, after TLS; ``exceeded`` once over ``ceiling`` (the connection is cut)."""

    ceiling: int
    received: int = 0
    exceeded: bool = False


class _Counting(ProtocolWrapper):
    factory: _CountingFactory

    def dataReceived(self, data: bytes) -> None:
        budget = self.factory.budget
        budget.received += len(data)
        if budget.received > budget.ceiling:
            budget.exceeded = True
            self.transport.abortConnection()  # type: ignore[union-attr]
            return
        super().dataReceived(data)


class _CountingFactory(WrappingFactory):
    protocol = _Counting

    def __init__(self, wrapped: IProtocolFactory, budget: _Budget) -> None:
        super().__init__(wrapped)
        self.budget = budget


@implementer(IStreamClientEndpoint)
@dataclass
class _Counted:
    endpoint: IStreamClientEndpoint
    budget: _Budget

    def connect(self, factory: IProtocolFactory) -> defer.Deferred[Any]:
        # The caller gets its own protocol back, as from any endpoint, not the counting wrapper.
        return defer.Deferred.fromCoroutine(self._connect(factory))

    async def _connect(self, factory: IProtocolFactory) -> Any:
        wrapper = await self.endpoint.connect(_CountingFactory(factory, self.budget))
        assert isinstance(wrapper, _Counting)
        return wrapper.wrappedProtocol


@implementer(IAgentEndpointFactory)
@dataclass
class _OneEndpoint:
    """An agent's endpoint factory that always answers the one endpoint (the host was looked up already)."""

    endpoint: IStreamClientEndpoint

    def endpointForURI(self, uri: Any) -> IStreamClientEndpoint:
        return self.endpoint


class _TooLarge(Exception):
    pass


class _Capped(Protocol):
    """Collects a response body of at most ``limit`` bytes; stops the transfer as soon as there is more."""

    def __init__(self, limit: int, announced: int | None) -> None:
        self.limit = limit
        self.announced = announced
        self.pieces: list[bytes] = []
        self.size = 0
        self.cancelled = False
        self.done: defer.Deferred[bytes] = defer.Deferred(self._cancel)

    def connectionMade(self) -> None:
        if self.announced is not None and self.announced > self.limit:
            self._too_large()

    def dataReceived(self, data: bytes) -> None:
        if self.done.called:
            return
        self.size += len(data)
        if self.size > self.limit:
            self._too_large()
            return
        self.pieces.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        from twisted.web.client import ResponseDone
        from twisted.web.http import PotentialDataLoss

        if self.done.called or self.cancelled:
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            self.done.callback(b"".join(self.pieces))
        else:
            self.done.errback(reason)

    def _too_large(self) -> None:
        if self.transport is not None:
            self.transport.stopProducing()  # type: ignore[attr-defined]
        if not self.done.called:
            self.done.errback(_TooLarge())

    def _cancel(self, _: defer.Deferred[bytes]) -> None:
        self.cancelled = True
        if self.transport is not None:
            self.transport.stopProducing()  # type: ignore[attr-defined]


def _reasons(error: BaseException) -> list[BaseException]:
    """The failures a ``twisted.web`` client error wraps (``ResponseNeverReceived`` and kin), or the error itself."""
    wrapped = getattr(error, "reasons", None)
    if isinstance(wrapped, list) and wrapped:
        return [reason.value if isinstance(reason, Failure) else reason for reason in wrapped]
    return [error]


def _explain(error: BaseException, target: Target) -> str:
    """Why a request failed, for a user: a certificate problem named as such, everything else as a broken link."""
    from service_identity import VerificationError

    host = target.host
    for reason in _reasons(error):
        if isinstance(reason, VerificationError):
            return f"the TLS certificate of {host} is not valid for the name {host}"
        if isinstance(reason, SSL.Error):
            if "certificate verify failed" in str(reason):
                return f"the TLS certificate of {host} is not signed by a trusted authority (system roots, --trust-ca)"
            return f"the TLS handshake with {host} failed"
    if isinstance(error, ConnectError):
        return f"cannot connect to {host} port {target.port}"
    return f"the connection to {host} broke before a complete answer"


@dataclass
class WebFetch:
    """Fetches small documents over verified HTTPS for every part of the appliance that talks to other servers.

    ``resolver`` is the appliance's (the outbound transport's); ``trust_ca`` are the PEM files of
    ``--trust-ca``, added to the system's roots (read once, here: a bad file raises ``TLSConfigError``);
    ``port`` is used when a URL names none (only tests give anything but 443).
    """

    reactor: Any
    resolver: IDnsResolver
    trust_ca: Sequence[Path] = ()
    _: KW_ONLY
    port: int = 443
    timeout_s: float = DEFAULT_TIMEOUT_S
    trust: SystemAndExtraTrust = field(init=False)

    def __post_init__(self) -> None:
        if self.timeout_s <= 0:
            raise ValueError("the fetch timeout must be positive")
        self.trust = trust_roots(tuple(self.trust_ca))

    async def get(self, url: str, *, max_bytes: int, accept: str = "application/json") -> Fetched:
        """GET ``url`` (see the module's rules): its status, Content-Type and body of at most ``max_bytes``;
        :class:`FetchError` saying why when there is no such answer within ``timeout_s``."""
        if max_bytes < 0:
            raise ValueError("max_bytes must not be negative")
        if not accept.isascii() or not accept.isprintable():
            raise ValueError("accept must be printable ASCII")
        target = check_url(url, self.port)
        work = defer.Deferred.fromCoroutine(self._get(target, max_bytes, accept))
        timed_out: list[bool] = []

        def give_up() -> None:
            timed_out.append(True)
            work.cancel()

        deadline = self.reactor.callLater(self.timeout_s, give_up)
        try:
            return await work
        except Exception:
            # Whatever the cancelled step raised (an abort, a CancelledError), the cause is the deadline.
            if timed_out:
                raise FetchError(f"{target.host} gave no complete answer within {self.timeout_s:g} s") from None
            raise
        finally:
            if deadline.active():
                deadline.cancel()

    async def _get(self, target: Target, max_bytes: int, accept: str) -> Fetched:
        from twisted.web.client import Agent, HTTPConnectionPool
        from twisted.web.http_headers import Headers

        addresses = [target.host] if target.is_address else await host_addresses(self.resolver, target.host)
        budget = _Budget(ceiling=2 * max_bytes + HEADER_ALLOWANCE)
        tcp = _FirstThatAnswers(self.reactor, addresses, target.port, self.timeout_s)
        endpoint = _Counted(wrapClientTLS(verified_client_tls(target.host, self.trust), tcp), budget)
        pool = HTTPConnectionPool(self.reactor, persistent=False)
        agent = Agent.usingEndpointFactory(self.reactor, _OneEndpoint(endpoint), pool=pool)
        headers = Headers({b"accept": [accept.encode("ascii")], b"user-agent": [b"mailiverse"]})
        too_large = FetchError(f"the answer of {target.host} is over {max_bytes} bytes")
        try:
            response = await agent.request(b"GET", target.uri, headers)
            length = response.length if isinstance(response.length, int) else None
            collector = _Capped(max_bytes, length)
            response.deliverBody(collector)
            body = await collector.done
        except _TooLarge:
            raise too_large from None
        except defer.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - every failure of the exchange is this one error
            if budget.exceeded:
                raise too_large from None
            raise FetchError(_explain(error, target)) from None
        raw_type = response.headers.getRawHeaders(b"content-type") or [b""]
        content_type = "".join(c for c in raw_type[0].decode("latin-1") if c.isprintable())[:200]
        return Fetched(int(response.code), content_type, body)
