"""A server's reply, as ``twisted.names`` decodes it, turned into an :class:`Answer` of plain values.

Only ``mailiverse/dns/resolver.py`` imports this module, on the first lookup: ``twisted.names`` stays
out of an appliance that has not looked anything up yet (idle memory, issue 9).

A reply is read as a stub resolver reads one from a recursive server: the records of the asked
type owned by the asked name or by a name the server's CNAME chain (in the same reply) leads to.
An empty reply's TTL is its SOA's negative-caching time (RFC 2308 §5); 0 when it carries no SOA.
A reply holds at most 64 KiB (DNS over TCP frames it in two bytes); past :data:`MAX_RECORDS`
records of the asked type the rest are dropped, a set larger than any the appliance has a use for.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence

from twisted.names import dns

from mailiverse.dns.answer import Answer, DnsRecord, MailExchange

TYPE_CODES = {"A": dns.A, "AAAA": dns.AAAA, "MX": dns.MX, "TXT": dns.TXT, "PTR": dns.PTR}
MAX_RECORDS = 100
#: CNAMEs followed within one reply; a longer chain is treated as ending there.
MAX_CNAME_CHAIN = 8


def question(name: str, rtype: str) -> dns.Query:
    """The query for a name and type :func:`mailiverse.dns.answer.check_query` accepted."""
    return dns.Query(name.encode("ascii"), TYPE_CODES[rtype], dns.IN)


def _owner(record: dns.RRHeader) -> str:
    return record.name.name.decode("ascii", "replace").lower().rstrip(".")


def _text(name: dns.Name | None) -> str:
    return bytes(name.name).decode("ascii", "replace").rstrip(".") if name is not None else ""


def _data(rtype: str, payload: object) -> DnsRecord:
    if isinstance(payload, dns.Record_A):
        return str(payload.dottedQuad())
    if isinstance(payload, dns.Record_AAAA):
        return socket.inet_ntop(socket.AF_INET6, payload.address)
    if isinstance(payload, dns.Record_MX):
        return MailExchange(int(payload.preference), _text(payload.name))
    if isinstance(payload, dns.Record_TXT):
        # RFC 7208 §3.3 (and RFC 6376 §3.6.2.2): one record's character-strings make one string.
        return b"".join(payload.data)
    if isinstance(payload, dns.Record_PTR):
        return _text(payload.name)
    raise TypeError(f"a {rtype} record holding {type(payload).__name__}")


def _negative_ttl(authority: Sequence[dns.RRHeader]) -> int:
    for record in authority:
        if isinstance(record.payload, dns.Record_SOA):
            return int(min(record.ttl, record.payload.minimum))
    return 0


def answer_from_reply(
    name: str, rtype: str, answers: Sequence[dns.RRHeader], authority: Sequence[dns.RRHeader]
) -> Answer:
    """The answer to ``name``/``rtype`` in a reply's answer and authority sections (a reply whose rcode is 0)."""
    aliases: dict[str, tuple[str, int]] = {}
    for record in answers:
        if isinstance(record.payload, dns.Record_CNAME):
            aliases[_owner(record)] = (_text(record.payload.name).lower(), record.ttl)
    chain, ttls = [name], []
    while chain[-1] in aliases and len(chain) <= MAX_CNAME_CHAIN:
        target, ttl = aliases[chain[-1]]
        if target in chain:
            break
        chain.append(target)
        ttls.append(ttl)
    code = TYPE_CODES[rtype]
    found = [r for r in answers if r.type == code and _owner(r) in chain][:MAX_RECORDS]
    if not found:
        return Answer(name, rtype, (), _negative_ttl(authority))
    records = tuple(_data(rtype, r.payload) for r in found)
    return Answer(name, rtype, records, int(min(ttls + [r.ttl for r in found])))


def nxdomain(name: str, rtype: str, reply: object) -> Answer:
    """The answer for an NXDOMAIN reply (``reply`` the ``dns.Message`` twisted.names' error carries)."""
    authority = reply.authority if isinstance(reply, dns.Message) else []
    return Answer(name, rtype, (), _negative_ttl(authority), nxdomain=True)
