"""The appliance's resolver against a real DNS server on 127.0.0.1 (twisted.names, UDP and TCP): each record
type, long and truncated TXT answers, NXDOMAIN and NODATA, failures, the cache and hostile names."""

from __future__ import annotations

import socket
import time

import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from mailiverse.dns import (
    AnswerCache,
    DnsTemporaryError,
    IDnsResolver,
    InvalidDnsQuery,
    MailExchange,
    Resolver,
)
from mailiverse.dns.replies import MAX_RECORDS
from tests.support.dnsserver import NEVER_ANSWERS, REFUSED, SERVFAIL, DnsServer

RECORDS = {
    "remote.test": {
        "MX": [[20, "mx2.remote.test"], [10, "mx1.remote.test"]],
        "TXT": ["v=spf1 ip4:192.0.2.0/24 -all"],
    },
    "mx1.remote.test": {"A": ["192.0.2.25"], "AAAA": ["2001:db8::25"]},
    "25.2.0.192.in-addr.arpa": {"PTR": ["mx1.remote.test"]},
    "www.remote.test": {"CNAME": ["mx1.remote.test"]},
}


def resolver(server: DnsServer, **options: object) -> Resolver:
    return Resolver([server.address], reactor=reactor, **options)


def unused_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_resolver_provides_its_interface() -> None:
    """Resolver provides IDnsResolver."""
    assert verifyObject(IDnsResolver, Resolver([("127.0.0.1", 53)], reactor=reactor))


@pytest_twisted.ensureDeferred
async def test_each_record_type_over_udp(dns_server: DnsServer) -> None:
    """A, AAAA, MX, TXT and PTR come back as plain values, in one UDP query each, with the server's TTL."""
    dns_server.zone.update(RECORDS)
    dns = resolver(dns_server)
    mx = await dns.lookup("remote.test", "MX")
    assert sorted(mx.records) == [MailExchange(10, "mx1.remote.test"), MailExchange(20, "mx2.remote.test")]
    assert mx.ttl == 300 and mx.exists and not mx.nxdomain
    assert (await dns.lookup("mx1.remote.test", "A")).records == ("192.0.2.25",)
    assert (await dns.lookup("mx1.remote.test", "AAAA")).records == ("2001:db8::25",)
    assert (await dns.lookup("remote.test", "TXT")).records == (b"v=spf1 ip4:192.0.2.0/24 -all",)
    assert (await dns.lookup("25.2.0.192.in-addr.arpa", "PTR")).records == ("mx1.remote.test",)
    assert [(q.transport, q.rtype) for q in dns_server.log.queries] == [
        ("udp", "MX"),
        ("udp", "A"),
        ("udp", "AAAA"),
        ("udp", "TXT"),
        ("udp", "PTR"),
    ]


@pytest_twisted.ensureDeferred
async def test_a_cname_the_server_follows_gives_the_targets_records(dns_server: DnsServer) -> None:
    """An alias answers with its target's records, the names as written or not (case, trailing dot) alike."""
    dns_server.zone.update(RECORDS)
    answer = await resolver(dns_server).lookup("WWW.Remote.Test.", "A")
    assert answer.records == ("192.0.2.25",) and answer.name == "www.remote.test"


@pytest_twisted.ensureDeferred
async def test_a_txt_record_of_several_character_strings_is_joined(dns_server: DnsServer) -> None:
    """A TXT record longer than 255 bytes (3 character-strings) and one split by its publisher come back whole,
    one bytes value per record (RFC 7208 §3.3)."""
    key = "v=DKIM1; k=rsa; p=" + "A" * 600
    dns_server.zone.update({"sel._domainkey.remote.test": {"TXT": [key, ["v=spf1 ", "-all"]]}})
    answer = await resolver(dns_server).lookup("sel._domainkey.remote.test", "TXT")
    assert answer.records == (key.encode(), b"v=spf1 -all")


@pytest_twisted.ensureDeferred
async def test_a_truncated_udp_answer_is_asked_again_over_tcp(dns_server: DnsServer) -> None:
    """A TXT set over 512 bytes comes back truncated over UDP; the resolver asks over TCP and gets all of it."""
    texts = [f"record {n}: " + "t" * 180 for n in range(6)]
    dns_server.zone.update({"big.remote.test": {"TXT": texts}})
    answer = await resolver(dns_server).lookup("big.remote.test", "TXT")
    assert sorted(answer.records) == sorted(t.encode() for t in texts)
    assert dns_server.log.count("big.remote.test", "TXT", "udp") == 1
    assert dns_server.log.count("big.remote.test", "TXT", "tcp") == 1


@pytest_twisted.ensureDeferred
async def test_a_huge_answer_is_cut_to_the_record_limit(dns_server: DnsServer) -> None:
    """An answer of 150 A records (over TCP) keeps the first MAX_RECORDS."""
    addresses = [f"198.51.{n // 250}.{n % 250 + 1}" for n in range(150)]
    dns_server.zone.update({"many.remote.test": {"A": addresses}})
    answer = await resolver(dns_server).lookup("many.remote.test", "A")
    assert len(answer.records) == MAX_RECORDS and set(answer.records) <= set(addresses)


@pytest_twisted.ensureDeferred
async def test_nxdomain_and_nodata_are_answers_told_apart(dns_server: DnsServer) -> None:
    """A missing name is NXDOMAIN (exists False); a name without records of the type is NODATA (exists True),
    also an empty non-terminal; both carry the SOA's negative TTL."""
    dns_server.zone.update(RECORDS)
    dns = resolver(dns_server)
    missing = await dns.lookup("nobody.remote.test", "A")
    assert missing.nxdomain and not missing.exists and missing.records == ()
    assert missing.ttl == dns_server.zone.negative_ttl
    nodata = await dns.lookup("remote.test", "A")
    assert nodata.exists and not nodata.nxdomain and nodata.records == ()
    assert nodata.ttl == dns_server.zone.negative_ttl
    parent = await dns.lookup("2.0.192.in-addr.arpa", "PTR")
    assert parent.exists and parent.records == ()


@pytest_twisted.ensureDeferred
async def test_a_server_that_never_answers_is_a_temporary_error_within_the_timeout(dns_server: DnsServer) -> None:
    """No reply at all: DnsTemporaryError once the timeout (0.6 s) is spent, after asking more than once."""
    started = time.monotonic()
    with pytest.raises(DnsTemporaryError, match="no answer within 0.6 s"):
        await resolver(dns_server, timeout=0.6).lookup(NEVER_ANSWERS, "TXT")
    elapsed = time.monotonic() - started
    assert 0.5 <= elapsed < 1.5, elapsed
    assert dns_server.log.count(NEVER_ANSWERS, "TXT") >= 2


@pytest.mark.parametrize(
    ("name", "rcode"), [(SERVFAIL, "SERVFAIL"), ("_dmarc." + SERVFAIL, "SERVFAIL"), (REFUSED, "REFUSED")]
)
@pytest_twisted.ensureDeferred
async def test_servfail_and_refused_are_temporary_errors(dns_server: DnsServer, name: str, rcode: str) -> None:
    """SERVFAIL and REFUSED raise DnsTemporaryError at once, and are not cached: the next lookup asks again."""
    dns = resolver(dns_server)
    for _ in range(2):
        started = time.monotonic()
        with pytest.raises(DnsTemporaryError, match=f"TXT {name}: the server answered {rcode}"):
            await dns.lookup(name, "TXT")
        assert time.monotonic() - started < 1
    assert dns_server.log.count(name, "TXT") == 2


@pytest_twisted.ensureDeferred
async def test_a_dead_first_server_is_passed_over_for_the_next(dns_server: DnsServer) -> None:
    """With a first server that is down, the lookup is answered by the second within the timeout."""
    dns_server.zone.update(RECORDS)
    dns = Resolver([("127.0.0.1", unused_udp_port()), dns_server.address], reactor=reactor, timeout=3)
    started = time.monotonic()
    assert (await dns.lookup("mx1.remote.test", "A")).records == ("192.0.2.25",)
    assert time.monotonic() - started < 3


@pytest_twisted.ensureDeferred
async def test_the_cache_answers_until_the_ttl_runs_out(dns_server: DnsServer) -> None:
    """A second lookup within the TTL does not reach the server, even when the record changed there; after the
    TTL the lookup asks again and sees the change."""
    clock = Clock()
    dns_server.zone.update({"remote.test": {"TTL": 60, "TXT": ["first"]}})
    dns = resolver(dns_server, cache=AnswerCache(clock))
    assert (await dns.lookup("remote.test", "TXT")).records == (b"first",)
    dns_server.zone.update({"remote.test": {"TTL": 60, "TXT": ["second"]}})
    clock.advance(59)
    assert (await dns.lookup("Remote.Test.", "TXT")).records == (b"first",)
    assert dns_server.log.count("remote.test", "TXT") == 1
    clock.advance(2)
    assert (await dns.lookup("remote.test", "TXT")).records == (b"second",)
    assert dns_server.log.count("remote.test", "TXT") == 2


@pytest_twisted.ensureDeferred
async def test_negative_answers_are_cached_briefly(dns_server: DnsServer) -> None:
    """NXDOMAIN is cached for the negative TTL (60 s here), never longer than the cache's bound (30 s here)."""
    clock = Clock()
    dns = resolver(dns_server, cache=AnswerCache(clock, max_negative_ttl=30))
    assert (await dns.lookup("new.remote.test", "A")).nxdomain
    dns_server.zone.update({"new.remote.test": {"A": ["192.0.2.7"]}})
    clock.advance(29)
    assert (await dns.lookup("new.remote.test", "A")).nxdomain
    clock.advance(2)
    assert (await dns.lookup("new.remote.test", "A")).records == ("192.0.2.7",)
    assert dns_server.log.count("new.remote.test", "A") == 2


@pytest_twisted.ensureDeferred
async def test_concurrent_lookups_of_one_name_share_one_query(dns_server: DnsServer) -> None:
    """Ten lookups of one name and type at once reach the server once."""
    dns_server.zone.update(RECORDS)
    dns = resolver(dns_server)
    answers = await defer.gatherResults(
        [defer.Deferred.fromCoroutine(dns.lookup("remote.test", "MX")) for _ in range(10)]
    )
    assert len({a.records for a in answers}) == 1
    assert dns_server.log.count("remote.test", "MX") == 1


@pytest.mark.parametrize(
    ("name", "rtype", "message"),
    [
        ("a" * 64 + ".remote.test", "A", "label of 64 characters"),
        (".".join(["abcdefghi"] * 26), "TXT", "259 characters long"),
        ("a..remote.test", "A", "empty label"),
        ("", "A", "empty"),
        ("bücher.test", "MX", "printable ASCII"),
        ("evil\x00.test", "TXT", "printable ASCII"),
        ("space here.test", "A", "printable ASCII"),
        ("remote.test", "ANY", "record type"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_hostile_names_are_refused_before_any_query(
    dns_server: DnsServer, name: str, rtype: str, message: str
) -> None:
    """Overlong names and labels, empty labels, non-ASCII or control characters and unsupported types raise
    InvalidDnsQuery saying which rule they break, and nothing is sent."""
    with pytest.raises(InvalidDnsQuery, match=message):
        await resolver(dns_server).lookup(name, rtype)
    assert dns_server.log.queries == []


@pytest_twisted.ensureDeferred
async def test_the_longest_valid_name_is_asked(dns_server: DnsServer) -> None:
    """A name of exactly 253 characters with 63-character labels is asked (NXDOMAIN here)."""
    name = ".".join(["a" * 63] * 3 + ["b" * 61])
    assert len(name) == 253
    assert (await resolver(dns_server).lookup(name, "A")).nxdomain
    assert dns_server.log.count(name, "A") == 1


def test_the_resolver_says_which_servers_it_asks() -> None:
    """describe() names the given servers (IPv6 in brackets), or the system's resolv.conf when none are given."""
    assert Resolver([("127.0.0.1", 5353), ("::1", 53)], reactor=reactor).describe() == "127.0.0.1:5353, [::1]:53"
    assert Resolver(reactor=reactor).describe() == "the system's resolvers (/etc/resolv.conf)"
