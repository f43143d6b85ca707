"""The appliance's one DNS resolver: ``twisted.names``' stub client behind a deadline, a cache and input limits.

``twistd mailiverse --dns-server HOST[:PORT]`` names the servers asked, in order; without it, those of
``/etc/resolv.conf`` (re-read when it changes, as ``twisted.names`` does). Each lookup goes over UDP,
falls back to TCP when the reply is truncated, retries across the servers, and ends by ``timeout``
seconds in every case: a server that never answers costs a message a bounded wait and a
:class:`DnsTemporaryError`, never a hang. Concurrent lookups of one name and type share one query
(``twisted.names``' client does that), and answers are kept in an :class:`AnswerCache`.

``twisted.names`` loads on the first lookup, not when the resolver is built (idle memory, issue 9).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.internet import defer
from twisted.internet.error import ConnectError
from zope.interface import implementer

from mailiverse.dns.answer import Answer, DnsTemporaryError, IDnsResolver, check_query
from mailiverse.dns.cache import AnswerCache
from mailiverse.dns.servers import Server, format_server

DEFAULT_TIMEOUT_S = 5.0
SYSTEM_RESOLV_CONF = "/etc/resolv.conf"
#: The error replies by the name of the ``twisted.names.error`` class each one raises.
_RCODES = {
    "DNSServerError": "SERVFAIL",
    "DNSQueryRefusedError": "REFUSED",
    "DNSFormatError": "FORMERR",
    "DNSNotImplementedError": "NOTIMP",
}


def attempt_timeouts(total_s: float, servers: int) -> tuple[float, float]:
    """How long each try waits, per ``twisted.names``' rounds: every server once briefly, then once longer.

    The two rounds over ``servers`` servers add up to ``total_s``, so every server is asked before the deadline.
    """
    share = total_s / max(1, servers)
    return share / 3, share * 2 / 3


@implementer(IDnsResolver)
class Resolver:
    """Looks names up for every part of the appliance (SPF, DKIM, DMARC, DNSBLs, outbound MX), on the reactor.

    ``servers`` are ``(address, port)`` pairs; empty means the system's. ``reactor`` provides UDP,
    TCP and time; ``cache`` defaults to an :class:`AnswerCache` on the reactor's clock.
    """

    def __init__(
        self,
        servers: Sequence[Server] = (),
        *,
        reactor: Any = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        cache: AnswerCache | None = None,
        resolv_conf: str = SYSTEM_RESOLV_CONF,
    ) -> None:
        if timeout <= 0:
            raise ValueError("the DNS timeout must be positive")
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.servers: tuple[Server, ...] = tuple(servers)
        self._reactor = reactor
        self._timeout = timeout
        self._attempts = attempt_timeouts(timeout, len(self.servers))
        self._cache = cache if cache is not None else AnswerCache(reactor)
        self._resolv_conf = resolv_conf
        self._client: Any = None

    def describe(self) -> str:
        """The servers asked, for the log: ``127.0.0.1:53, [::1]:53`` or the system's resolv.conf."""
        if self.servers:
            return ", ".join(format_server(server) for server in self.servers)
        return f"the system's resolvers ({self._resolv_conf})"

    async def lookup(self, name: str, rtype: str) -> Answer:
        """See :meth:`IDnsResolver.lookup`: from the cache, else from the servers (then cached)."""
        key = check_query(name, rtype)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        answer = await self._ask(*key)
        self._cache.put(key, answer)
        return answer

    async def _ask(self, name: str, rtype: str) -> Answer:
        from twisted.names import error as dns_error

        from mailiverse.dns import replies

        query = self._stub().query(replies.question(name, rtype), timeout=self._attempts)
        query.addTimeout(self._timeout, self._reactor)
        try:
            answers, authority, _ = await query
        except dns_error.DNSNameError as error:
            return replies.nxdomain(name, rtype, error.args[0] if error.args else None)
        except dns_error.DomainError as error:
            # SERVFAIL, REFUSED, FORMERR, NOTIMP and unknown rcodes alike: this server cannot say now.
            rcode = _RCODES.get(type(error).__name__, "an unknown error code")
            raise DnsTemporaryError(f"{rtype} {name}: the server answered {rcode}") from None
        except (defer.TimeoutError, defer.CancelledError):
            raise DnsTemporaryError(f"{rtype} {name}: no answer within {self._timeout:g} s") from None
        except (ConnectError, OSError) as error:
            raise DnsTemporaryError(f"{rtype} {name}: no server reachable ({type(error).__name__})") from None
        return replies.answer_from_reply(name, rtype, answers, authority)

    def _stub(self) -> Any:
        if self._client is None:
            from twisted.names import client

            if self.servers:
                self._client = client.Resolver(servers=list(self.servers), reactor=self._reactor)
            else:
                self._client = client.Resolver(resolv=self._resolv_conf, reactor=self._reactor)
        return self._client
