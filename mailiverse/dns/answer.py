"""What a DNS lookup may ask and what it gives back: the query rules, ``Answer``, the errors, ``IDnsResolver``.

Every lookup the appliance makes (SPF, DKIM, DMARC, DNSBLs, the outbound MX) goes through one
``IDnsResolver`` and gets these plain values back, never ``twisted.names`` objects: they cross the
delivery workers' pipe as they are, and a caller can tell the three outcomes DNS-based checks must
keep apart: records, a name that does not exist (NXDOMAIN), a name without records of the type
(NODATA). A lookup that gets no answer at all raises :class:`DnsTemporaryError` (SPF's and DMARC's
``temperror``, SMTP's 451), so no failure is ever mistaken for "no record".
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import NamedTuple

from zope.interface import Interface

#: The record types the appliance asks for.
RTYPES = ("A", "AAAA", "MX", "TXT", "PTR")
#: RFC 1035 §2.3.4: a name is at most 255 octets on the wire, 253 characters written without the root dot.
MAX_NAME_LENGTH = 253
MAX_LABEL_LENGTH = 63


class MailExchange(NamedTuple):
    """One MX record: lower ``preference`` first; ``exchange`` is ``""`` for a null MX (RFC 7505)."""

    preference: int
    exchange: str


#: A record's data: an address (A, AAAA) or a name (PTR) as text, a TXT record's character-strings
#: joined into bytes (RFC 7208 §3.3), an MX as :class:`MailExchange`.
DnsRecord = str | bytes | MailExchange


@dataclass(frozen=True)
class Answer:
    """The answer to one lookup.

    ``records`` are those of the asked type (after the CNAMEs the server followed), in the server's
    order; empty means NODATA, or NXDOMAIN when ``nxdomain`` is set. ``ttl`` is the server's, in
    seconds: the smallest of the records' (and CNAMEs'), or the negative-caching time of an empty answer.
    """

    name: str
    rtype: str
    records: tuple[DnsRecord, ...]
    ttl: int
    nxdomain: bool = False

    @property
    def exists(self) -> bool:
        """Whether the name exists (it may still have no records of this type)."""
        return not self.nxdomain


class DnsTemporaryError(Exception):
    """No answer now (timeout, SERVFAIL, REFUSED, an unreadable reply): the caller fails temporarily and retries."""


class InvalidDnsQuery(ValueError):
    """A name or record type that is never sent to a server; the message says which rule it breaks."""


def check_query(name: str, rtype: str) -> tuple[str, str]:
    """``(name, rtype)`` as they are asked and cached: the name lower-cased, without the root dot.

    Raises :class:`InvalidDnsQuery` for a type outside :data:`RTYPES` and for a name that is not
    printable ASCII (IDN names arrive as A-labels), is longer than 253 characters, or has an empty
    label or one longer than 63.
    """
    if rtype not in RTYPES:
        raise InvalidDnsQuery(f"record type {rtype[:16]!r} is not one of {', '.join(RTYPES)}")
    text = name[:-1] if name.endswith(".") else name
    shown = repr(text[:64]) + ("..." if len(text) > 64 else "")
    if not text:
        raise InvalidDnsQuery("the name is empty")
    if len(text) > MAX_NAME_LENGTH:
        raise InvalidDnsQuery(f"the name {shown} is {len(text)} characters long, over the limit of {MAX_NAME_LENGTH}")
    if not text.isascii() or not text.isprintable() or " " in text or "\\" in text:
        raise InvalidDnsQuery(f"the name {shown} has characters other than printable ASCII (give IDNs as A-labels)")
    for label in text.split("."):
        if not label:
            raise InvalidDnsQuery(f"the name {shown} has an empty label")
        if len(label) > MAX_LABEL_LENGTH:
            raise InvalidDnsQuery(f"the name {shown} has a label of {len(label)} characters, over {MAX_LABEL_LENGTH}")
    return text.lower(), rtype


class IDnsResolver(Interface):
    """Asynchronous DNS lookups on the reactor, with timeouts and a cache."""

    def lookup(name: str, rtype: str) -> Awaitable[Answer]:
        """The ``rtype`` records of ``name`` (one of :data:`RTYPES`); NXDOMAIN and NODATA are answers.

        Raises :class:`InvalidDnsQuery` for a name or type :func:`check_query` refuses, and
        :class:`DnsTemporaryError` when no server answered in time or one answered with an error.
        """
