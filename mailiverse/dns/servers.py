"""The DNS servers the appliance asks: ``--dns-server HOST[:PORT]`` values read and written back.

A server is given by its address, never by a name: a name would need a DNS server to find the DNS server.
"""

from __future__ import annotations

import ipaddress

DNS_PORT = 53
Server = tuple[str, int]
_EXAMPLE = "give an IPv4 or IPv6 address and an optional port, e.g. 192.0.2.53, 192.0.2.53:5353 or [2001:db8::53]:53"


def parse_server(text: str) -> Server:
    """``192.0.2.53``, ``192.0.2.53:5353``, ``2001:db8::53`` or ``[2001:db8::53]:5353`` -> (address, port).

    The port defaults to 53. Raises ValueError saying what is wrong, for the caller to prefix with
    the option's name.
    """
    value = text.strip()
    if address := _address(value):
        return address, DNS_PORT
    if value.startswith("["):
        host, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")) or ":" not in host:
            raise ValueError(f"{text[:80]!r} is malformed: {_EXAMPLE}")
        port_text = rest[1:] if rest else str(DNS_PORT)
    elif value.count(":") == 1:
        host, port_text = value.split(":")
    else:
        host, port_text = value, str(DNS_PORT)
    address = _address(host)
    if not address:
        raise ValueError(f"{text[:80]!r} is not an IP address (a DNS server is given by its address): {_EXAMPLE}")
    if not port_text.isascii() or not port_text.isdigit() or len(port_text) > 5 or not 0 < int(port_text) < 65536:
        raise ValueError(f"{text[:80]!r} has no valid port (1 to 65535): {_EXAMPLE}")
    return address, int(port_text)


def _address(text: str) -> str:
    """``text`` as a normalised IP address, or ``""`` when it is none."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return ""


def format_server(server: Server) -> str:
    """``192.0.2.53:53`` or ``[2001:db8::53]:53``: the form :func:`parse_server` reads back."""
    address, port = server
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
