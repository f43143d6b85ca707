"""The trusted-proxy rule (mailiverse.auth.forwarded): which address a request counts as, for rate limits.

Only a peer inside a trusted network is believed; from it, ``X-Forwarded-For`` and RFC 7239
``Forwarded`` are walked from the right, and the first hop that is not itself a trusted proxy is
the client. A hop that names no address stops the walk, so nothing left of it is believed.
"""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailiverse.auth.forwarded import TrustedProxies, forwarded_client, parse_trusted_proxy

PROXY = "10.0.0.5"
TRUSTED = TrustedProxies.parse(["10.0.0.0/24", "2001:db8:ffff::/48"])


def client(peer: str = PROXY, *, xff: list[bytes] | None = None, fwd: list[bytes] | None = None) -> str:
    return forwarded_client(peer, TRUSTED, x_forwarded_for=xff or [], forwarded=fwd or [])


def test_untrusted_peer_is_the_client_whatever_it_sends() -> None:
    """From a peer outside every trusted network, both headers are ignored entirely."""
    assert client("192.0.2.1", xff=[b"198.51.100.7"], fwd=[b"for=198.51.100.8"]) == "192.0.2.1"
    assert forwarded_client(PROXY, TrustedProxies(), x_forwarded_for=[b"198.51.100.7"]) == PROXY


def test_trusted_peer_without_headers_is_the_client() -> None:
    """A trusted proxy that forwards nothing is counted as itself."""
    assert client() == PROXY


@pytest.mark.parametrize(
    ("xff", "expected"),
    [
        ([b"198.51.100.7"], "198.51.100.7"),
        # what the client sent itself stands left of what the proxy appended: never believed
        ([b"203.0.113.66, 198.51.100.7"], "198.51.100.7"),
        ([b"203.0.113.66", b"198.51.100.7"], "198.51.100.7"),
        # hops that are trusted proxies themselves are walked over
        ([b"198.51.100.7, 10.0.0.9"], "198.51.100.7"),
        ([b"203.0.113.66,198.51.100.7 ,\t10.0.0.9"], "198.51.100.7"),
        ([b"2001:db8:1:2::1"], "2001:db8:1:2::1"),
        ([b"2001:DB8:1:2:0:0:0:1"], "2001:db8:1:2::1"),
        ([b"::ffff:198.51.100.7"], "198.51.100.7"),
        # every hop a trusted proxy: the left-most of them
        ([b"10.0.0.8, 10.0.0.9"], "10.0.0.8"),
        # a hop that is no address stops the walk at the nearest trusted hop
        ([b"not-an-ip"], PROXY),
        ([b""], PROXY),
        ([b"198.51.100.7, garbage, 10.0.0.9"], "10.0.0.9"),
        ([b"198.51.100.7,,"], PROXY),
        ([b"198.51.100.7:4711"], PROXY),
        ([b"[2001:db8::1]"], PROXY),
        ([b"fe80::1%eth0"], PROXY),
        ([b"198.051.100.7"], PROXY),
        ([b"198.51.100"], PROXY),
        ([b"198.51.100.7.1"], PROXY),
        ([b"\xd9\xa1.2.3.4"], PROXY),
        ([b"1" * 5000], PROXY),
    ],
)
def test_x_forwarded_for(xff: list[bytes], expected: str) -> None:
    """X-Forwarded-For: the right-most address that is not a trusted proxy, strictly parsed."""
    assert client(xff=xff) == expected


@pytest.mark.parametrize(
    ("fwd", "expected"),
    [
        ([b"for=198.51.100.7"], "198.51.100.7"),
        ([b'for="198.51.100.7"'], "198.51.100.7"),
        ([b'for="198.51.100.7:4711"'], "198.51.100.7"),
        ([b'For="[2001:db8:1:2::1]"'], "2001:db8:1:2::1"),
        ([b'for="[2001:db8:1:2::1]:4711";proto=https;by=10.0.0.5'], "2001:db8:1:2::1"),
        ([b'for="[2001:db8:1:2::1]:_port"'], "2001:db8:1:2::1"),
        ([b"for=203.0.113.66, for=198.51.100.7"], "198.51.100.7"),
        ([b"for=203.0.113.66", b"for=198.51.100.7;proto=http"], "198.51.100.7"),
        ([b"for=198.51.100.7, for=10.0.0.9"], "198.51.100.7"),
        ([b'for=198.51.100.7;by="\\"x\\""'], "198.51.100.7"),
        # identifiers that name no address, and malformed elements, stop the walk
        ([b"for=unknown"], PROXY),
        ([b"for=_hidden"], PROXY),
        ([b"for=198.51.100.7, for=_hidden"], PROXY),
        ([b"for=198.51.100.7, for=_hidden, for=10.0.0.9"], "10.0.0.9"),
        ([b"proto=https"], PROXY),
        ([b"for=2001:db8::1"], PROXY),
        ([b'for="2001:db8::1"'], PROXY),
        ([b'for="[198.51.100.7]"'], PROXY),
        ([b'for="[2001:db8::1"'], PROXY),
        ([b'for="198.51.100.7:99999"'], PROXY),
        ([b'for="198.51.100.7:"'], PROXY),
        ([b"for=198.51.100.7;for=198.51.100.8"], PROXY),
        ([b'for="198.51.100.7'], PROXY),
        ([b"for=198.51.100.7 x"], PROXY),
        ([b"for=\xff"], PROXY),
        # a broken line stops the walk, even when an earlier line was fine
        ([b"for=198.51.100.7", b'for="[2001:db8::1'], PROXY),
    ],
)
def test_forwarded(fwd: list[bytes], expected: str) -> None:
    """RFC 7239 Forwarded: for= nodes, quoted IPv6 in brackets, ports; obfuscated or unknown nodes are no address."""
    assert client(fwd=fwd) == expected


def test_both_headers_must_agree() -> None:
    """With both headers, the client is believed only when they name the same one; else the proxy counts."""
    assert client(xff=[b"198.51.100.7"], fwd=[b"for=198.51.100.7"]) == "198.51.100.7"
    assert client(xff=[b"198.51.100.7"], fwd=[b"for=203.0.113.66"]) == PROXY
    assert client(xff=[b"198.51.100.7"], fwd=[b"for=_hidden"]) == PROXY


def test_trusted_ipv6_and_mapped_peers() -> None:
    """Trust is checked for IPv6 peers, and an IPv4-mapped peer counts as its IPv4 address."""
    assert client("2001:db8:ffff:1::2", xff=[b"198.51.100.7"]) == "198.51.100.7"
    assert client("::ffff:10.0.0.5", xff=[b"198.51.100.7"]) == "198.51.100.7"
    assert client("2001:db8:fffe::1", xff=[b"198.51.100.7"]) == "2001:db8:fffe::1"


def test_walk_is_bounded() -> None:
    """A chain of trusted hops is walked at most MAX_HOPS deep; past that nothing further left is believed."""
    chain = b", ".join([b"198.51.100.7"] + [b"10.0.0.9"] * 1000)
    assert client(xff=[chain]) == "10.0.0.9"


@pytest.mark.parametrize(
    ("text", "network"),
    [
        ("10.0.0.0/8", "10.0.0.0/8"),
        ("192.0.2.1", "192.0.2.1/32"),
        (" 2001:db8::/32 ", "2001:db8::/32"),
        ("::1", "::1/128"),
        ("::ffff:10.0.0.0/104", "10.0.0.0/8"),
    ],
)
def test_parse_trusted_proxy(text: str, network: str) -> None:
    """A CIDR or a single address is one trusted network (IPv4-mapped networks count as IPv4)."""
    assert parse_trusted_proxy(text) == ipaddress.ip_network(network)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("10.0.0.1/8", "host bits"),
        ("10.0.0.0/33", "not a valid"),
        ("proxy.example.org", "CIDR"),
        ("10.0.0.0/8/8", "CIDR"),
        ("fe80::/64%eth0", "CIDR"),
        ("", "CIDR"),
        ("0.0.0.0/0", "every peer"),
        ("::/0", "every peer"),
    ],
)
def test_parse_trusted_proxy_refuses(text: str, why: str) -> None:
    """Anything but one IP network is refused with a message that says what is wrong."""
    with pytest.raises(ValueError, match=why):
        parse_trusted_proxy(text)


REAL = st.one_of(st.ip_addresses(v=4, network="198.51.100.0/24"), st.ip_addresses(v=6, network="2001:db8:1::/48")).map(
    str
)


@given(prefix=st.binary(max_size=200), real=REAL)
def test_spoofed_x_forwarded_for_never_wins(prefix: bytes, real: str) -> None:
    """Whatever the client sends, the address the trusted proxy appends is the one counted."""
    line = prefix + b", " + real.encode()
    assert client(xff=[line]) == real
    assert client(xff=[prefix, real.encode()]) == real


@given(prefix=st.binary(max_size=200), real=REAL)
def test_spoofed_forwarded_never_wins(prefix: bytes, real: str) -> None:
    """Whatever the client sends, the count is the appended client or the proxy, never a name it chose."""
    node = f'"[{real}]"' if ":" in real else real
    appended = f"for={node}".encode()
    assert client(fwd=[prefix + b", " + appended]) in (real, PROXY)
    assert client(fwd=[prefix, appended]) in (real, PROXY)
