"""A real authoritative DNS server for tests: ``twisted.names`` serving records given as Python data on
127.0.0.1, UDP and TCP on one port, counting every query it receives.

Records are ``{name: {rtype: [value, ...]}}``: A and AAAA addresses, MX ``[preference, exchange]``
(``""`` for a null MX), TXT strings (split into 255-byte character-strings, as a zone file would)
or lists of character-strings, PTR and CNAME names; an optional ``"TTL": seconds`` per name. A name
without records of the asked type gets NODATA, an unknown name NXDOMAIN (a name with names below it
exists, RFC 8020), both with an SOA whose minimum is the zone's negative TTL. A UDP reply over 512
bytes (or the query's EDNS size) goes out empty with TC set, so the client must ask again over TCP.

Failures on purpose, for these names and every name below them: :data:`NEVER_ANSWERS` gets no
reply at all, :data:`SERVFAIL` gets SERVFAIL, :data:`REFUSED` gets REFUSED.

Two ways to run it:

* in the test's reactor (pytest-twisted): ``start_dns_server(zone)``, or the ``dns_server`` fixture
  (import it into a conftest); ``server.zone.update(...)`` changes records while it serves;
* as a process, for a real ``twistd mailiverse`` to ask: ``python -m tests.support.dnsserver ZONE.json
  [QUERY_LOG]`` prints ``{"port": N}`` once serving and appends ``transport rtype name`` to
  QUERY_LOG for every query; ``start_dns_process`` does that and reads the log back.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.internet import defer, reactor
from twisted.internet.error import CannotListenError
from twisted.names import dns, server

from tests.support.harness import ROOT

NEVER_ANSWERS = "timeout.dns.test"
SERVFAIL = "servfail.dns.test"
REFUSED = "refused.dns.test"
UDP_LIMIT = 512
TXT_STRING_LIMIT = 255
MAX_CNAME_CHAIN = 8

Records = dict[str, dict[str, Any]]


def _key(name: str) -> str:
    return name.lower().rstrip(".")


def _under(name: str, parents: Iterable[str]) -> bool:
    return any(name == parent or name.endswith("." + parent) for parent in parents)


def character_strings(value: str | bytes | list[Any]) -> list[bytes]:
    """A TXT value as its character-strings: a list is taken as given, a string split every 255 bytes."""
    if isinstance(value, list):
        return [part.encode() if isinstance(part, str) else bytes(part) for part in value]
    data = value.encode() if isinstance(value, str) else value
    return [data[i : i + TXT_STRING_LIMIT] for i in range(0, len(data), TXT_STRING_LIMIT)] or [b""]


def _payload(rtype: str, value: Any, ttl: int) -> Any:
    if rtype == "A":
        return dns.Record_A(value, ttl=ttl)
    if rtype == "AAAA":
        return dns.Record_AAAA(value, ttl=ttl)
    if rtype == "MX":
        preference, exchange = value
        return dns.Record_MX(int(preference), exchange.encode(), ttl=ttl)
    if rtype == "TXT":
        return dns.Record_TXT(*character_strings(value), ttl=ttl)
    if rtype == "PTR":
        return dns.Record_PTR(value.encode(), ttl=ttl)
    if rtype == "CNAME":
        return dns.Record_CNAME(value.encode(), ttl=ttl)
    raise ValueError(f"the test DNS server does not serve {rtype} records")


@dataclass
class Zone:
    """What the server answers; change it while serving with :meth:`update` or :meth:`remove`."""

    records: Records = field(default_factory=dict)
    ttl: int = 300
    negative_ttl: int = 60
    never_answers: tuple[str, ...] = (NEVER_ANSWERS,)
    servfail: tuple[str, ...] = (SERVFAIL,)
    refused: tuple[str, ...] = (REFUSED,)

    def update(self, records: Records) -> None:
        """Set the given names' records (each name's record types replace the ones it had)."""
        for name, types in records.items():
            self.records[_key(name)] = dict(types)

    def remove(self, name: str) -> None:
        """Forget ``name``: it answers NXDOMAIN from now on."""
        self.records.pop(_key(name), None)

    def to_json(self) -> str:
        return json.dumps(
            {
                "records": self.records,
                "ttl": self.ttl,
                "negative_ttl": self.negative_ttl,
                "never_answers": self.never_answers,
                "servfail": self.servfail,
                "refused": self.refused,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Zone:
        data = json.loads(text)
        zone = cls(ttl=data.get("ttl", 300), negative_ttl=data.get("negative_ttl", 60))
        for attribute in ("never_answers", "servfail", "refused"):
            if attribute in data:
                setattr(zone, attribute, tuple(_key(n) for n in data[attribute]))
        zone.update(data.get("records", {}))
        return zone

    def _exists(self, name: str) -> bool:
        return any(known == name or known.endswith("." + name) for known in self.records)

    def _rrs(self, name: str, rtype: str) -> list[dns.RRHeader]:
        types = self.records.get(name, {})
        ttl = int(types.get("TTL", self.ttl))
        return [
            dns.RRHeader(name.encode(), dns.REV_TYPES[rtype], dns.IN, ttl, _payload(rtype, value, ttl), auth=True)
            for value in types.get(rtype, [])
        ]

    def soa(self) -> dns.RRHeader:
        record = dns.Record_SOA(
            b"ns.dns.test", b"hostmaster.dns.test", 1, 3600, 600, 86400, self.negative_ttl, ttl=self.negative_ttl
        )
        return dns.RRHeader(b"", dns.SOA, dns.IN, self.negative_ttl, record, auth=True)

    def answer(self, name: str, rtype: str) -> tuple[int, list[dns.RRHeader], list[dns.RRHeader]]:
        """(rcode, answers, authority) for a query, the zone's own CNAMEs followed."""
        answers: list[dns.RRHeader] = []
        current = name
        for _ in range(MAX_CNAME_CHAIN):
            if rtype != "CNAME" and self.records.get(current, {}).get("CNAME"):
                [alias] = self._rrs(current, "CNAME")
                answers.append(alias)
                current = _key(self.records[current]["CNAME"][0])
                continue
            break
        found = self._rrs(current, rtype)
        if found:
            return dns.OK, answers + found, []
        return (dns.OK if self._exists(current) else dns.ENAME), answers, [self.soa()]


@dataclass(frozen=True)
class Query:
    """One query the server received."""

    transport: str
    rtype: str
    name: str


@dataclass
class QueryLog:
    """Every query received, in order; also appended to ``path`` when given (the process form)."""

    path: Path | None = None
    queries: list[Query] = field(default_factory=list)

    def record(self, query: Query) -> None:
        self.queries.append(query)
        if self.path is not None:
            with self.path.open("a") as log:
                log.write(f"{query.transport} {query.rtype} {query.name}\n")

    def count(self, name: str, rtype: str | None = None, transport: str | None = None) -> int:
        """How many queries for ``name`` (of ``rtype``, over ``transport`` "udp"/"tcp") were received."""
        return sum(
            1
            for q in self.queries
            if q.name == _key(name) and rtype in (None, q.rtype) and transport in (None, q.transport)
        )


class _Factory(server.DNSServerFactory):
    """Answers from a :class:`Zone`; logs, delays, fails and truncates as the module's docstring says."""

    def __init__(self, zone: Zone, log: QueryLog) -> None:
        super().__init__()
        self.zone, self.log = zone, log

    def handleQuery(self, message: dns.Message, protocol: Any, address: Any) -> None:
        query = message.queries[0]
        name = _key(query.name.name.decode("ascii", "replace"))
        rtype = dns.QUERY_TYPES.get(query.type, str(query.type))
        self.log.record(Query("udp" if address is not None else "tcp", rtype, name))
        if _under(name, self.zone.never_answers):
            return
        if _under(name, self.zone.servfail):
            rcode, answers, authority = dns.ESERVER, [], []
        elif _under(name, self.zone.refused):
            rcode, answers, authority = dns.EREFUSED, [], []
        else:
            rcode, answers, authority = self.zone.answer(name, rtype)
        response = self._responseFromMessage(message=message, rCode=rcode, answers=answers, authority=authority)
        limit = max(UDP_LIMIT, message.maxSize)
        if address is not None and len(response.toStr()) > limit:
            response = self._responseFromMessage(message=message, rCode=rcode)
            response.trunc = 1
        self.sendReply(protocol, response, address)


@dataclass
class DnsServer:
    """A server listening in this process's reactor."""

    zone: Zone
    log: QueryLog
    port: int
    _udp: Any
    _tcp: Any
    _factory: _Factory

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    async def stop(self) -> None:
        for protocol in list(self._factory.connections):
            protocol.transport.loseConnection()
        await defer.gatherResults([defer.maybeDeferred(p.stopListening) for p in (self._udp, self._tcp)])


def start_dns_server(zone: Zone | None = None, log: QueryLog | None = None) -> DnsServer:
    """Serve ``zone`` on 127.0.0.1, UDP and TCP on one free port."""
    zone = zone if zone is not None else Zone()
    log = log if log is not None else QueryLog()
    factory = _Factory(zone, log)
    for _ in range(20):
        udp = reactor.listenUDP(0, dns.DNSDatagramProtocol(factory), interface="127.0.0.1")  # type: ignore[attr-defined]
        port = int(udp.getHost().port)
        try:
            tcp = reactor.listenTCP(port, factory, interface="127.0.0.1")  # type: ignore[attr-defined]
        except CannotListenError:
            udp.stopListening()
            continue
        return DnsServer(zone, log, port, udp, tcp, factory)
    raise RuntimeError("no port free for both UDP and TCP on 127.0.0.1")


@pytest_twisted.async_yield_fixture
async def dns_server() -> AsyncIterator[DnsServer]:
    """A DNS server in the test's reactor serving an empty zone (plus the failing names) for the test to fill."""
    running = start_dns_server()
    try:
        yield running
    finally:
        await running.stop()


@dataclass
class DnsProcess:
    """The server run as ``python -m tests.support.dnsserver``, for processes other than the test's to ask."""

    process: subprocess.Popen[bytes]
    port: int
    query_log: Path

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def queries(self) -> QueryLog:
        """The queries received so far."""
        log = QueryLog()
        if self.query_log.exists():
            for line in self.query_log.read_text().splitlines():
                transport, rtype, name = line.split(" ", 2)
                log.queries.append(Query(transport, rtype, name))
        return log

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        if self.process.stdout:
            self.process.stdout.close()


def start_dns_process(zone: Zone, directory: Path) -> DnsProcess:
    """Write ``zone`` to ``directory/zone.json`` and serve it from a process of its own."""
    directory.mkdir(parents=True, exist_ok=True)
    zone_file, query_log = directory / "zone.json", directory / "queries.log"
    zone_file.write_text(zone.to_json())
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.dnsserver", str(zone_file), str(query_log)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        process.wait(10)
        raise RuntimeError(f"the test DNS server did not start (exit status {process.returncode})")
    return DnsProcess(process, int(json.loads(line)["port"]), query_log)


def main(zone_file: str, query_log: str | None = None) -> None:
    zone = Zone.from_json(Path(zone_file).read_text())
    running = start_dns_server(zone, QueryLog(Path(query_log) if query_log else None))
    print(json.dumps({"port": running.port}), flush=True)
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main(*sys.argv[1:3])
