"""Unit tests of the connection caps shared by the SMTP and HTTPS listeners: keys, counts, the wrapping factory."""

from __future__ import annotations

import pytest
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import StringTransportWithDisconnection
from twisted.python.failure import Failure

from mailiverse.auth.connections import ConnectionLimiter, LimitedFactory, connection_key


@pytest.mark.parametrize(
    ("host", "key"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("fe80::1%eth0", "fe80::/64"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("::1", "::/64"),
        ("/run/mailiverse.sock", "/run/mailiverse.sock"),
    ],
)
def test_connection_keys(host: str, key: str) -> None:
    """IPv4 peers are counted per address, IPv6 per /64, IPv4-mapped as IPv4, anything else by its text."""
    assert connection_key(host) == key


def test_per_address_cap_groups_an_ipv6_slash_64() -> None:
    """Addresses of one IPv6 /64 share one per-address count; another /64 and IPv4 peers have their own."""
    limiter = ConnectionLimiter(max_connections=100, max_per_address=2)
    first = limiter.admit("2001:db8:0:1::1")
    second = limiter.admit("2001:db8:0:1:ffff::2")
    assert first == second == "2001:db8:0:1::/64"
    assert limiter.admit("2001:db8:0:1::3") is None
    assert limiter.admit("2001:db8:0:2::1") == "2001:db8:0:2::/64"
    assert limiter.admit("192.0.2.1") == "192.0.2.1"
    assert limiter.admit("192.0.2.1") == "192.0.2.1"
    assert limiter.admit("192.0.2.1") is None
    assert limiter.admit("192.0.2.2") == "192.0.2.2"
    assert limiter.open == 6
    assert limiter.open_from("2001:db8:0:1::99") == 2


def test_total_cap_and_release() -> None:
    """Past the total cap every address is refused; a released connection frees its slot and forgets an idle key."""
    limiter = ConnectionLimiter(max_connections=3, max_per_address=2)
    keys = [limiter.admit(host) for host in ("192.0.2.1", "192.0.2.2", "192.0.2.3")]
    assert None not in keys
    assert limiter.admit("192.0.2.4") is None
    assert keys[0] is not None
    limiter.release(keys[0])
    assert limiter.open == 2 and limiter.open_from("192.0.2.1") == 0
    assert limiter.admit("192.0.2.4") == "192.0.2.4"


def test_limits_must_be_positive() -> None:
    """A cap of zero would refuse every connection: it is a configuration error."""
    with pytest.raises(ValueError, match="max_per_address"):
        ConnectionLimiter(max_connections=10, max_per_address=0)
    with pytest.raises(ValueError, match="max_connections"):
        ConnectionLimiter(max_connections=0, max_per_address=1)


class _Recorder(Protocol):
    def __init__(self) -> None:
        self.made = False

    def connectionMade(self) -> None:
        self.made = True


def _connect(
    factory: LimitedFactory, peer: IPv4Address | IPv6Address
) -> tuple[Protocol | None, StringTransportWithDisconnection]:
    transport = StringTransportWithDisconnection(peerAddress=peer)
    protocol = factory.buildProtocol(peer)
    if protocol is not None:
        transport.protocol = protocol
        protocol.makeConnection(transport)
    return protocol, transport


def test_limited_factory_refuses_before_the_wrapped_protocol_exists() -> None:
    """Over the cap, ``buildProtocol`` returns None (the reactor closes the socket unread);
    a closed connection gives its slot back exactly once."""
    limiter = ConnectionLimiter(max_connections=10, max_per_address=1)
    built: list[_Recorder] = []

    def make() -> _Recorder:
        built.append(_Recorder())
        return built[-1]

    factory = LimitedFactory(Factory.forProtocol(make), limiter)
    first, transport = _connect(factory, IPv6Address("TCP", "2001:db8::1", 4000))
    assert first is not None and built[0].made
    refused, _ = _connect(factory, IPv6Address("TCP", "2001:db8::2", 4001))
    assert refused is None and len(built) == 1
    other, _ = _connect(factory, IPv4Address("TCP", "192.0.2.9", 4002))
    assert other is not None
    transport.loseConnection()
    first.connectionLost(Failure(ConnectionDone()))  # a second report of the same loss
    assert limiter.open == 1
    again, _ = _connect(factory, IPv6Address("TCP", "2001:db8::3", 4003))
    assert again is not None
