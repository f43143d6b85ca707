"""A delivery worker's DNS, asked of the appliance: one message's questions, bounded and each asked once.

The worker can open no socket (``RLIMIT_NOFILE`` 3), so the judge's lookups travel over its pipe
(``ENQUIRY`` and ``ANSWER`` frames, ``delivery/framing.py``) to the appliance's resolver, or, with
``--workers 0``, to the reactor thread. An ``Enquirer`` serves one message: it remembers every answer,
asks at most ``MAX_ENQUIRIES`` questions within ``DNS_BUDGET_SECONDS``, and turns whatever it cannot
ask or get answered into ``DnsUnavailable``, which the checks report as ``temperror``.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from mailiverse.delivery import framing

#: A record as the judge gets it: TXT (its strings joined), A, AAAA and PTR as text; MX as (preference, name).
Record = str | tuple[int, str]


class DnsUnavailable(Exception):
    """A lookup got no answer (a timeout, a server failure, or the message's DNS budget is spent): temperror."""


@dataclass(frozen=True)
class DnsReply:
    """The answer to one question: its records, or why there are none (``nxdomain``, ``temperror``)."""

    records: tuple[Record, ...] = ()
    error: str | None = None

    def to_wire(self) -> dict[str, Any]:
        return {"records": [list(r) if isinstance(r, tuple) else r for r in self.records], "error": self.error}

    @classmethod
    def from_wire(cls, value: object, rtype: str) -> DnsReply:
        """The reply an ``ANSWER`` frame carries for a ``rtype`` question; ValueError when it is malformed."""
        if not isinstance(value, dict) or set(value) != {"records", "error"}:
            raise ValueError("an answer is {records, error}")
        error, records = value["error"], value["records"]
        if error is not None and error not in framing.ANSWER_ERRORS:
            raise ValueError("an answer's error is temperror or nxdomain")
        if not isinstance(records, list):
            raise ValueError("an answer's records are a list")
        return cls(tuple(_record(item, rtype) for item in records), error)


def _record(item: object, rtype: str) -> Record:
    if rtype == "MX":
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], int) and isinstance(item[1], str)):
            raise ValueError("an MX record is [preference, name]")
        return (item[0], item[1])
    if not isinstance(item, str):
        raise ValueError("a record is text")
    if rtype in ("A", "AAAA"):
        address = ipaddress.ip_address(item)
        if address.version != (4 if rtype == "A" else 6):
            raise ValueError("an address record of the wrong family")
    return item


def dns_name(name: str | bytes) -> str:
    """``name`` as a question may carry it (lower case, no trailing dot); "" when it cannot be a DNS name."""
    if isinstance(name, bytes):
        try:
            name = name.decode("ascii")
        except UnicodeDecodeError:
            return ""
    name = name.rstrip(".").lower()
    if not 0 < len(name) <= 253 or not name.isascii() or not name.isprintable() or " " in name or "\\" in name:
        return ""
    if any(not 0 < len(label) <= 63 for label in name.split(".")):
        return ""
    return name


#: Asks one question (a DNS name and a record type) and waits for its reply.
Exchange = Callable[[str, str], DnsReply]


class Enquirer:
    """The DNS of one message: each question asked once, at most ``max_enquiries`` within ``budget_seconds``."""

    def __init__(
        self,
        exchange: Exchange,
        *,
        max_enquiries: int = framing.MAX_ENQUIRIES,
        budget_seconds: float = framing.DNS_BUDGET_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._exchange = exchange
        self._clock = clock
        self._deadline = clock() + budget_seconds
        self._ceiling = max_enquiries
        self._answers: dict[tuple[str, str], DnsReply] = {}
        self.asked = 0

    def lookup(self, name: str | bytes, rtype: str) -> tuple[Record, ...]:
        """The records of ``name`` (none when it does not exist); DnsUnavailable when there is no answer."""
        question = (dns_name(name), rtype)
        if not question[0] or rtype not in framing.ENQUIRY_TYPES:
            return ()  # no such name, or a type no check needs (pyspf's "SPF" in its harsh mode)
        reply = self._answers.get(question)
        if reply is None:
            if self.asked >= self._ceiling or self._clock() >= self._deadline:
                raise DnsUnavailable("this message's DNS questions are used up")
            self.asked += 1
            reply = self._answers[question] = self._exchange(*question)
        if reply.error == "temperror":
            raise DnsUnavailable(f"no answer for {question[0]} {rtype}")
        return reply.records

    def txt(self, name: str | bytes) -> list[str]:
        """The TXT records of ``name``, each one's strings joined."""
        return [record for record in self.lookup(name, "TXT") if isinstance(record, str)]

    @contextmanager
    def allowance(self, count: int) -> Iterator[None]:
        """At most ``count`` new questions inside the block, so one check cannot spend the others' share."""
        saved = self._ceiling
        self._ceiling = min(saved, self.asked + count)
        try:
            yield
        finally:
            self._ceiling = saved
