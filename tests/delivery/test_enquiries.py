"""The appliance's answers to a worker's DNS questions: the resolver's Answer as the worker gets it, and every
failure (no answer in time, the budget spent, an error) as temperror; the worker's side bounds itself too."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from mailiverse.delivery import framing
from mailiverse.delivery.dnschannel import DnsReply, DnsUnavailable, Enquirer, dns_name
from mailiverse.delivery.enquiries import Answerer
from mailiverse.dns import Answer, DnsTemporaryError, InvalidDnsQuery, MailExchange


def _answered(answerer: Answerer, name: str, rtype: str) -> dict[str, Any]:
    result: list[dict[str, Any]] = []
    Deferred.fromCoroutine(answerer.answer(name, rtype)).addCallback(result.append)
    assert result, "the answer did not come at once"
    return result[0]


@pytest.mark.parametrize(
    ("answer", "rtype", "wire"),
    [
        (Answer("a.test", "TXT", (b"v=spf1 -all", b"\xff\x00"), 60), "TXT", ["v=spf1 -all", "\xff\x00"]),
        (
            Answer("a.test", "MX", (MailExchange(10, "mx.a.test."), MailExchange(0, "")), 60),
            "MX",
            [[10, "mx.a.test"], [0, ""]],
        ),
        (Answer("a.test", "A", ("192.0.2.1", "2001:db8::1"), 60), "A", ["192.0.2.1"]),
        (Answer("a.test", "AAAA", ("2001:db8::1",), 60), "AAAA", ["2001:db8::1"]),
        (Answer("1.2.0.192.in-addr.arpa", "PTR", ("mx.a.test.",), 60), "PTR", ["mx.a.test"]),
    ],
)
def test_the_resolvers_answer_as_the_worker_gets_it(answer: Answer, rtype: str, wire: list[Any]) -> None:
    """TXT bytes arrive as Latin-1 text (every byte kept), MX as [preference, name], addresses checked by family."""

    async def resolve(name: str, asked: str) -> Answer:
        return answer

    payload = _answered(Answerer(resolve, Clock()), "a.test", rtype)
    assert payload == {"records": wire, "error": None}
    reply = DnsReply.from_wire(payload, rtype)
    if rtype == "TXT":
        assert [r.encode("latin-1") for r in reply.records if isinstance(r, str)] == list(answer.records)


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        (DnsTemporaryError("SERVFAIL"), "temperror"),
        (InvalidDnsQuery("bad name"), "nxdomain"),
        (RuntimeError(), "temperror"),
    ],
)
def test_a_resolver_failure_is_an_answer(failure: Exception, error: str) -> None:
    """No answer is temperror; a name the resolver never asks is treated as one that does not exist."""

    async def resolve(name: str, rtype: str) -> Answer:
        raise failure

    assert _answered(Answerer(resolve, Clock()), "a.test", "TXT") == {"records": [], "error": error}


def test_nxdomain_is_passed_on() -> None:
    """An Answer with nxdomain set reaches the worker as nxdomain."""

    async def resolve(name: str, rtype: str) -> Answer:
        return Answer(name, rtype, (), 60, nxdomain=True)

    assert _answered(Answerer(resolve, Clock()), "a.test", "TXT")["error"] == "nxdomain"


def test_a_lookup_that_takes_too_long_is_temperror_and_the_budget_ends_all() -> None:
    """A lookup without an answer is temperror after DNS_LOOKUP_SECONDS; after DNS_BUDGET_SECONDS of the
    message's first question, every later one is temperror at once, without asking the resolver."""
    clock = Clock()
    asked: list[str] = []

    def resolve(name: str, rtype: str) -> Deferred[Answer]:
        asked.append(name)
        return Deferred()  # never fires

    answerer = Answerer(resolve, clock)
    results: list[dict[str, Any]] = []
    Deferred.fromCoroutine(answerer.answer("slow.test", "TXT")).addCallback(results.append)
    clock.advance(framing.DNS_LOOKUP_SECONDS - 0.1)
    assert results == []
    clock.advance(0.2)
    assert results == [{"records": [], "error": "temperror"}]
    clock.advance(framing.DNS_BUDGET_SECONDS)
    assert _answered(answerer, "late.test", "TXT") == {"records": [], "error": "temperror"}
    assert asked == ["slow.test"]


def test_an_answer_too_large_for_the_pipe_is_temperror() -> None:
    """Records over MAX_ANSWER in all are not sent; the worker gets temperror."""

    async def resolve(name: str, rtype: str) -> Answer:
        return Answer(name, rtype, (b"x" * 40_000, b"y" * 40_000), 60)

    assert _answered(Answerer(resolve, Clock()), "a.test", "TXT")["error"] == "temperror"


def test_the_answerer_counts_the_questions() -> None:
    """may_ask turns false after max_enquiries questions: the pool's line between a question and a break."""

    async def resolve(name: str, rtype: str) -> Answer:
        return Answer(name, rtype, (), 60)

    answerer = Answerer(resolve, Clock(), max_enquiries=2)
    for _ in range(2):
        assert answerer.may_ask()
        _answered(answerer, "a.test", "TXT")
    assert not answerer.may_ask()


def test_the_worker_side_asks_once_and_stops_at_its_limits() -> None:
    """The Enquirer asks each (name, type) once, remembers temperror too, refuses names and types no check
    sends, and past its count or its time raises DnsUnavailable without asking."""
    asked: list[tuple[str, str]] = []
    now = [0.0]

    def exchange(name: str, rtype: str) -> DnsReply:
        asked.append((name, rtype))
        return DnsReply(error="temperror") if name == "down.test" else DnsReply(("v=spf1 -all",))

    enquirer = Enquirer(exchange, max_enquiries=3, budget_seconds=10, clock=lambda: now[0])
    assert enquirer.txt(b"A.Test.") == enquirer.txt("a.test") == ["v=spf1 -all"]
    for _ in range(2):
        with pytest.raises(DnsUnavailable):
            enquirer.lookup("down.test", "TXT")
    assert enquirer.lookup("a.test", "SPF") == () and enquirer.lookup("bad name.test", "TXT") == ()
    with enquirer.allowance(0), pytest.raises(DnsUnavailable):
        enquirer.lookup("b.test", "TXT")
    now[0] = 11
    with pytest.raises(DnsUnavailable):
        enquirer.lookup("c.test", "TXT")
    assert asked == [("a.test", "TXT"), ("down.test", "TXT")]
    assert dns_name("x" * 64 + ".test") == "" and dns_name("a\\.test") == ""


def test_a_malformed_enquiry_is_refused() -> None:
    """The main side reads only {name, type} of a known type and a plain name."""
    assert framing.enquiry(b'{"name": "a.test", "type": "TXT"}') == ("a.test", "TXT")
    for bad in (
        b'{"name": "a.test", "type": "ANY"}',
        b'{"name": "a b.test", "type": "TXT"}',
        b'{"name": "a.test", "type": "TXT", "more": 1}',
        b'{"name": "' + b"a" * 300 + b'", "type": "TXT"}',
        b"[]",
    ):
        with pytest.raises(ValueError):
            framing.enquiry(bad)
