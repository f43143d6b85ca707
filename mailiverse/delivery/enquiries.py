"""The appliance's side of a judged message's DNS questions: each answered by its resolver, bounded in count and time.

A delivery worker asks over its pipe (``ENQUIRY``, ``delivery/pool.py``); with ``--workers 0`` the
judge asks from its thread (``delivery/pipeline.py``). Either way one ``Answerer`` per message answers,
with the appliance's resolver: ``resolve(name, rtype)`` returning a Deferred or an awaitable of an
answer (``mailiverse.dns.Resolver.lookup``, or a test's fake). It counts the questions (the pool kills
a worker that asks more than ``MAX_ENQUIRIES``), gives each at most ``DNS_LOOKUP_SECONDS`` and all of
them ``DNS_BUDGET_SECONDS``, and answers every failure with ``temperror``: a question never goes
unanswered and never raises.

What a resolver's answer may look like: ``mailiverse.dns.Answer`` (``records``, ``nxdomain``; a
temporary failure raises, a name it never asks raises ``ValueError``), or more loosely an object whose
``records`` (or the answer itself, iterated) holds the records. A TXT record is bytes, text, or a
sequence of its strings (or has ``strings``); an address is text (or has ``address``); an MX record
is ``(preference, name)`` (or has ``preference`` and ``exchange``); a PTR record is a name (or has
``target``). Records that fit none of these are left out.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import ensureDeferred

from mailiverse.delivery import framing
from mailiverse.delivery.dnschannel import DnsReply, Record
from mailiverse.logs import Logger

log = Logger()

#: The appliance's resolver: (name, record type) -> a Deferred or awaitable of the answer.
Resolve = Callable[[str, str], Any]


class Answerer:
    """Answers the DNS questions of one message with ``resolve``, at most ``max_enquiries`` of them."""

    def __init__(
        self,
        resolve: Resolve,
        reactor: Any,
        *,
        max_enquiries: int = framing.MAX_ENQUIRIES,
        budget_seconds: float = framing.DNS_BUDGET_SECONDS,
        lookup_seconds: float = framing.DNS_LOOKUP_SECONDS,
    ) -> None:
        self._resolve = resolve
        self._reactor = reactor
        self._max_enquiries = max_enquiries
        self._budget_seconds = budget_seconds
        self._lookup_seconds = lookup_seconds
        self._deadline: float | None = None
        self.asked = 0

    def may_ask(self) -> bool:
        """Whether another question is within the message's allowance."""
        return self.asked < self._max_enquiries

    async def answer(self, name: str, rtype: str) -> dict[str, Any]:
        """The ``ANSWER`` payload for ``name``/``rtype``: records, ``nxdomain`` or ``temperror``; never raises."""
        self.asked += 1
        now = self._reactor.seconds()
        if self._deadline is None:
            self._deadline = now + self._budget_seconds
        timeout = min(self._lookup_seconds, self._deadline - now)
        if timeout <= 0:
            return DnsReply(error="temperror").to_wire()
        try:
            pending = ensureDeferred(self._resolve(name, rtype))
            if not pending.called:  # a cached answer is here already: no timer to arm and cancel
                pending.addTimeout(timeout, self._reactor)
            reply = reply_of(await pending, rtype)
        except ValueError:
            return DnsReply(error="nxdomain").to_wire()  # a name the resolver never asks (InvalidDnsQuery)
        except Exception as error:  # noqa: BLE001 - a timeout, a server failure, DnsTemporaryError: all temperror
            log.debug(
                "DNS {rtype} {name}: no answer ({error_type})", rtype=rtype, name=name, error_type=type(error).__name__
            )
            return DnsReply(error="temperror").to_wire()
        wire = reply.to_wire()
        if len(json.dumps(wire)) > framing.MAX_ANSWER:
            return DnsReply(error="temperror").to_wire()  # more than any record the checks read
        return wire


def reply_of(answer: Any, rtype: str) -> DnsReply:
    """A resolver's ``answer`` to a ``rtype`` question as the worker gets it."""
    if getattr(answer, "nxdomain", False):
        return DnsReply(error="nxdomain")
    items = getattr(answer, "records", answer)
    records = [record for record in (_record(item, rtype) for item in items) if record is not None]
    return DnsReply(tuple(records))


def _record(item: Any, rtype: str) -> Record | None:
    try:
        if rtype == "TXT":
            return _txt(getattr(item, "strings", item))
        if rtype in ("A", "AAAA"):
            address = ipaddress.ip_address(_text(getattr(item, "address", item)))
            return str(address) if address.version == (4 if rtype == "A" else 6) else None
        if rtype == "MX":
            if hasattr(item, "exchange"):
                return (int(item.preference), _name(item.exchange))
            preference, exchange = item.split(None, 1) if isinstance(item, str) else item
            return (int(preference), _name(exchange))
        return _name(getattr(item, "target", item))
    except (TypeError, ValueError, AttributeError):
        return None


def _txt(value: Any) -> str:
    if isinstance(value, (bytes, str)):
        return _text(value)
    return "".join(_text(piece) for piece in value)


def _text(value: Any) -> str:
    # Latin-1 maps every byte to one character, so the worker gets the record's bytes back exactly.
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, str):
        return value
    raise TypeError("a record's text is bytes or str")


def _name(value: Any) -> str:
    return str(value.decode("ascii") if isinstance(value, bytes) else value).rstrip(".")
