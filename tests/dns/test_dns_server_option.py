"""``--dns-server ADDRESS[:PORT]``: repeatable, IPv4 and IPv6, port 53 by default, the system's resolvers when
absent; anything else is a usage error naming the option."""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.python import usage

from mailiverse.dns import format_server, parse_server
from tests.support.options import parse


def test_without_the_option_the_system_resolvers_are_used(tmp_path: Path) -> None:
    """No --dns-server: no servers in the configuration (the resolver reads /etc/resolv.conf)."""
    assert parse(tmp_path).dns_servers == ()


@pytest.mark.parametrize(
    ("value", "server"),
    [
        ("127.0.0.1:5353", ("127.0.0.1", 5353)),
        ("192.0.2.53", ("192.0.2.53", 53)),
        (" 192.0.2.53:53 ", ("192.0.2.53", 53)),
        ("::1", ("::1", 53)),
        ("2001:DB8:0::53", ("2001:db8::53", 53)),
        ("[2001:db8::53]:5353", ("2001:db8::53", 5353)),
        ("[::1]", ("::1", 53)),
    ],
)
def test_addresses_and_ports_are_read(tmp_path: Path, value: str, server: tuple[str, int]) -> None:
    """IPv4 with or without a port, IPv6 bare or in brackets with a port; addresses normalised, port 53 by default."""
    assert parse(tmp_path, "--dns-server", value).dns_servers == (server,)


def test_the_option_repeats_in_order_each_server_once(tmp_path: Path) -> None:
    """Several --dns-server keep their order; a repeated server is asked once."""
    config = parse(tmp_path, "--dns-server", "[::1]:5353", "--dns-server", "127.0.0.1", "--dns-server", "[0::1]:5353")
    assert config.dns_servers == (("::1", 5353), ("127.0.0.1", 53))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "not an IP address"),
        ("dns.example.net", "not an IP address"),
        ("dns.example.net:53", "not an IP address"),
        ("127.0.0.1:0", "no valid port"),
        ("127.0.0.1:65536", "no valid port"),
        ("127.0.0.1:x", "no valid port"),
        ("127.0.0.1:", "no valid port"),
        ("[::1", "malformed"),
        ("[::1]53", "malformed"),
        ("[127.0.0.1]:53", "malformed"),
        ("2001:db8::53:x", "not an IP address"),
    ],
)
def test_bad_values_are_usage_errors_naming_the_option(tmp_path: Path, value: str, message: str) -> None:
    """A name instead of an address, a bad port or broken brackets: a usage error naming --dns-server and the form."""
    with pytest.raises(usage.UsageError, match=f"--dns-server .*{message}.*e.g. 192.0.2.53"):
        parse(tmp_path, "--dns-server", value)


def test_more_than_eight_servers_are_refused(tmp_path: Path) -> None:
    """Nine servers would share one lookup's deadline too thinly: refused, saying how many are allowed."""
    args = [arg for n in range(9) for arg in ("--dns-server", f"192.0.2.{n + 1}")]
    with pytest.raises(usage.UsageError, match="--dns-server is given 9 times; at most 8"):
        parse(tmp_path, *args)


@pytest.mark.parametrize("server", [("192.0.2.53", 53), ("2001:db8::53", 5353)])
def test_a_server_is_written_as_it_is_read(server: tuple[str, int]) -> None:
    """format_server writes the form parse_server reads back (brackets around IPv6)."""
    assert parse_server(format_server(server)) == server
