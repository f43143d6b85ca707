"""DNS for the whole appliance: one resolver with timeouts, a cache and input limits, and the values it answers with.

``twisted.names`` is imported on the first lookup only (see ``resolver.py``); importing this package costs little.
"""

from mailiverse.dns.answer import (
    RTYPES,
    Answer,
    DnsRecord,
    DnsTemporaryError,
    IDnsResolver,
    InvalidDnsQuery,
    MailExchange,
    check_query,
)
from mailiverse.dns.cache import AnswerCache
from mailiverse.dns.resolver import DEFAULT_TIMEOUT_S, Resolver
from mailiverse.dns.servers import DNS_PORT, Server, format_server, parse_server

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "DNS_PORT",
    "RTYPES",
    "Answer",
    "AnswerCache",
    "DnsRecord",
    "DnsTemporaryError",
    "IDnsResolver",
    "InvalidDnsQuery",
    "MailExchange",
    "Resolver",
    "Server",
    "check_query",
    "format_server",
    "parse_server",
]
