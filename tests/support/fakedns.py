"""DNS held in a dict, for the tests of judging a message: records by ``(name, type)``.

``FakeZone`` answers a worker's ``Enquirer`` directly (the worker's side of the DNS questions);
``FakeResolver`` answers like the appliance's resolver (``mailiverse.dns.Resolver.lookup``: an
``Answer``, ``DnsTemporaryError`` when there is none), for the pool and the pipeline. Both record what
they were asked. A name of ``failing`` gets no answer; a name with no records at all does not exist.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mailiverse.delivery.dnschannel import DnsReply, Record
from mailiverse.dns import Answer, DnsTemporaryError, MailExchange

Records = dict[tuple[str, str], tuple[Record, ...]]


@dataclass
class FakeZone:
    """An ``Enquirer``'s exchange over ``records``."""

    records: Records = field(default_factory=dict)
    failing: tuple[str, ...] = ()
    asked: list[tuple[str, str]] = field(default_factory=list)

    def __call__(self, name: str, rtype: str) -> DnsReply:
        self.asked.append((name, rtype))
        if name in self.failing:
            return DnsReply(error="temperror")
        found = self.records.get((name, rtype))
        if found is None:
            exists = any(known == name for known, _ in self.records)
            return DnsReply() if exists else DnsReply(error="nxdomain")
        return DnsReply(found)


@dataclass
class FakeResolver:
    """``lookup(name, rtype)`` as the appliance's resolver answers, over ``records``."""

    records: Records = field(default_factory=dict)
    failing: tuple[str, ...] = ()
    asked: list[tuple[str, str]] = field(default_factory=list)

    async def lookup(self, name: str, rtype: str) -> Answer:
        self.asked.append((name, rtype))
        if name in self.failing:
            raise DnsTemporaryError(f"no answer for {name}")
        found = self.records.get((name, rtype))
        if found is None:
            exists = any(known == name for known, _ in self.records)
            return Answer(name, rtype, (), 60, nxdomain=not exists)
        return Answer(name, rtype, tuple(_record(value, rtype) for value in found), 300)


def _record(value: Record, rtype: str) -> str | bytes | MailExchange:
    """As the resolver gives records: TXT as bytes, MX as MailExchange, the rest as text."""
    if isinstance(value, tuple):
        return MailExchange(*value)
    return value.encode("latin-1") if rtype == "TXT" else value
