"""The client's address for rate limits: the TCP peer, or, behind a trusted proxy, the client it forwards.

Behind a TLS-terminating proxy every request comes from the proxy's address, so every client
would share one rate-limit bucket. ``--trusted-proxy CIDR`` names the proxies: only when the TCP
peer is inside one of those networks are ``X-Forwarded-For`` and RFC 7239 ``Forwarded`` read, and
from any other peer they are ignored entirely (anyone can send them).

A proxy appends the address it saw to what the client sent, so the headers are walked from the
right: the first hop that is not itself a trusted proxy is the client. A hop that names no
address (malformed, ``unknown``, an obfuscated ``_identifier``) stops the walk, and the nearest
trusted hop counts instead, since nothing left of such a hop can be believed. When both headers
are present they must name the same client, or the request counts as the proxy (one of them
came from the client, and there is no telling which). Addresses are parsed strictly: bare IPv4
or IPv6 in ``X-Forwarded-For``; ``Forwarded`` nodes as RFC 7239 §6 writes them (IPv6 quoted and
in brackets, an optional port).

Every front end that serves HTTP takes the address from :func:`client_address`. The proxies
trusted are the ``trusted_proxies`` of the request's ``Site`` (a :class:`TrustedProxies`); a Site
without one trusts nobody.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: The address counted for a peer that has none (a UNIX socket, an in-memory transport).
UNKNOWN_PEER = "0.0.0.0"  # noqa: S104 - a rate-limit key, not a bind
#: Hops walked at most, right to left; a longer chain of trusted proxies ends at the last one walked.
MAX_HOPS = 32

_ADDRESS = re.compile(r"[0-9A-Fa-f:.]{2,45}")
_NETWORK = re.compile(r"[0-9A-Fa-f:.]{2,45}(?:/[0-9]{1,3})?")
_OWS = " \t"
# RFC 9110 token and quoted-string (no obs-text: a header that needs it is not one a proxy wrote).
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_QUOTED = re.compile(r'"((?:[\t \x21\x23-\x5b\x5d-\x7e]|\\[\t \x21-\x7e])*)"')
_QUOTED_PAIR = re.compile(r"\\(.)")
# RFC 7239 §6: node = nodename [ ":" node-port ]
_PORT = r"(?::(?:[0-9]{1,5}|_[A-Za-z0-9._-]+))?"
_IPV4_NODE = re.compile(r"([0-9.]{7,15})" + _PORT)
_IPV6_NODE = re.compile(r"\[([0-9A-Fa-f:.]{2,45})\]" + _PORT)


def _unmapped(ip: IPAddress) -> IPAddress:
    """An IPv4-mapped IPv6 address as the IPv4 address it is (dual-stack sockets report those)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def parse_address(text: str) -> IPAddress | None:
    """A bare IPv4 or IPv6 address, or None: no ports, brackets, zone ids or leading zeros."""
    if not _ADDRESS.fullmatch(text):
        return None
    try:
        return _unmapped(ipaddress.ip_address(text))
    except ValueError:
        return None


def parse_trusted_proxy(text: str) -> IPNetwork:
    """One trusted network: a CIDR (``10.0.0.0/8``, ``2001:db8::/32``) or one address.

    Raises ``ValueError`` saying what is wrong: not a network, host bits set, or ``/0`` (which
    would let every peer choose the address it is counted as).
    """
    value = text.strip()
    if not _NETWORK.fullmatch(value):
        raise ValueError(f"{text!r} is not an IP network in CIDR notation, e.g. 10.0.0.0/8 or 2001:db8::/32")
    try:
        network: IPNetwork = ipaddress.ip_network(value, strict=True)
    except ValueError as e:
        raise ValueError(f"{text!r} is not a valid network: {e}") from None
    if network.prefixlen == 0:
        raise ValueError(f"{text!r} would trust every peer, so anyone could choose the address it is counted as")
    if isinstance(network, ipaddress.IPv6Network):
        mapped = network.network_address.ipv4_mapped
        if mapped is not None and network.prefixlen >= 96:
            return ipaddress.IPv4Network((mapped, network.prefixlen - 96))
    return network


@dataclass(frozen=True)
class TrustedProxies:
    """The networks of the proxies whose forwarding headers are believed (none by default)."""

    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, texts: Iterable[str]) -> TrustedProxies:
        """Networks from text (see :func:`parse_trusted_proxy`); ``ValueError`` on the first bad one."""
        return cls(tuple(parse_trusted_proxy(text) for text in texts))

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, ip: IPAddress) -> bool:
        """Whether ``ip`` is inside one of the trusted networks."""
        ip = _unmapped(ip)
        return any(ip.version == network.version and ip in network for network in self.networks)


NO_PROXIES = TrustedProxies()

# One hop of a forwarding header: the address it names, or None for a hop that names none.
_Hop = IPAddress | None


def _x_forwarded_for_hops(lines: Sequence[bytes]) -> list[_Hop]:
    """The hops of ``X-Forwarded-For`` lines, left to right: comma-separated bare addresses."""
    return [parse_address(item.strip(_OWS)) for line in lines for item in line.decode("latin-1").split(",")]


def _forwarded_elements(line: str) -> list[dict[str, str]] | None:
    """The elements of one ``Forwarded`` line as ``{parameter: value}``, or None if it is malformed."""
    elements: list[dict[str, str]] = []
    current: dict[str, str] = {}
    pos, end = 0, len(line)
    while True:
        while pos < end and line[pos] in _OWS:
            pos += 1
        name = _TOKEN.match(line, pos)
        if name:
            pos = name.end()
            if pos >= end or line[pos] != "=":
                return None
            token = _TOKEN.match(line, pos + 1)
            quoted = None if token else _QUOTED.match(line, pos + 1)
            if token:
                value, pos = token.group(), token.end()
            elif quoted:
                value, pos = _QUOTED_PAIR.sub(r"\1", quoted.group(1)), quoted.end()
            else:
                return None
            key = name.group().lower()
            if key in current:  # RFC 7239 §4: a parameter occurs at most once per element
                return None
            current[key] = value
            while pos < end and line[pos] in _OWS:
                pos += 1
        if pos >= end:
            elements.append(current)
            return elements
        if line[pos] == ";":
            pos += 1
        elif line[pos] == ",":
            elements.append(current)
            current = {}
            pos += 1
        else:
            return None


def _node_address(node: str | None) -> _Hop:
    """The address of a ``for=`` node, or None for ``unknown``, an obfuscated name or anything malformed."""
    if node is None or not _port_ok(node):
        return None
    ipv6 = _IPV6_NODE.fullmatch(node)
    ipv4 = _IPV4_NODE.fullmatch(node)
    if ipv6 and ":" in ipv6.group(1):  # brackets hold IPv6 only
        return parse_address(ipv6.group(1))
    if ipv4:
        return parse_address(ipv4.group(1))
    return None


def _port_ok(node: str) -> bool:
    """A numeric port, if there is one, is at most 65535 (an obfuscated one is fine)."""
    port = node.rpartition("]")[2] if node.startswith("[") else node
    _, colon, digits = port.partition(":")
    return not colon or not digits.isdigit() or int(digits) <= 65535


def _forwarded_hops(lines: Sequence[bytes]) -> list[_Hop]:
    """The hops of ``Forwarded`` lines, left to right; a malformed line is one hop naming nobody."""
    hops: list[_Hop] = []
    for raw in lines:
        elements = _forwarded_elements(raw.decode("latin-1"))
        if elements is None:
            hops.append(None)
        else:
            hops.extend(_node_address(element.get("for")) for element in elements)
    return hops


def _walk(peer: IPAddress, trusted: TrustedProxies, hops: list[_Hop]) -> IPAddress:
    """From the right: the first hop that is not a trusted proxy; stop at a hop that names nobody."""
    client = peer
    for count, hop in enumerate(reversed(hops)):
        if hop is None or count >= MAX_HOPS:
            break
        client = hop
        if not trusted.trusts(hop):
            break
    return client


def forwarded_client(
    peer: str,
    trusted: TrustedProxies,
    *,
    x_forwarded_for: Sequence[bytes] = (),
    forwarded: Sequence[bytes] = (),
) -> str:
    """The address a request from ``peer`` counts as, given its forwarding header lines (see the module)."""
    peer_ip = parse_address(peer)
    if peer_ip is None or not trusted.trusts(peer_ip):
        return peer
    named: set[IPAddress] = set()
    if x_forwarded_for:
        named.add(_walk(peer_ip, trusted, _x_forwarded_for_hops(x_forwarded_for)))
    if forwarded:
        named.add(_walk(peer_ip, trusted, _forwarded_hops(forwarded)))
    return str(named.pop()) if len(named) == 1 else str(peer_ip)


def peer_address(address: Any) -> str:
    """The IP text of a Twisted address (``UNKNOWN_PEER`` for one without, such as a UNIX socket)."""
    host = getattr(address, "host", None)
    return host if isinstance(host, str) and host else UNKNOWN_PEER


def client_address(request: Any) -> str:
    """The address a twisted.web request counts as: its peer, or the client a trusted proxy forwards.

    The proxies trusted are the ``trusted_proxies`` of the request's ``Site``; only the plain-HTTP
    Site behind ``--trusted-proxy`` has any.
    """
    peer = peer_address(request.getClientAddress())
    trusted = getattr(getattr(request, "site", None), "trusted_proxies", None)
    if not isinstance(trusted, TrustedProxies) or not trusted:
        return peer
    headers = request.requestHeaders
    return forwarded_client(
        peer,
        trusted,
        x_forwarded_for=headers.getRawHeaders(b"x-forwarded-for", []),
        forwarded=headers.getRawHeaders(b"forwarded", []),
    )


__all__ = [
    "MAX_HOPS",
    "NO_PROXIES",
    "UNKNOWN_PEER",
    "TrustedProxies",
    "client_address",
    "forwarded_client",
    "parse_address",
    "parse_trusted_proxy",
    "peer_address",
]
