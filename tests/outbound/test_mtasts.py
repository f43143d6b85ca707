"""MTA-STS (RFC 8461) for direct delivery: the policy grammar, hostile policies included; the policy looked up on a
real DNS server, fetched from a real HTTPS server and kept; real deliveries to a real STARTTLS SMTP server that an
``enforce`` policy lets through only over TLS verified for the MX host name, and never in plain text."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_twisted
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import reactor
from twisted.internet.task import Clock
from twisted.logger import LogLevel

from mailiverse.dns import AnswerCache, Resolver
from mailiverse.logs import DEFAULT_LEVEL, set_level
from mailiverse.outbound.mtasts import (
    MAX_AGE_LIMIT_S,
    MtaSts,
    Policy,
    PolicyError,
    mx_matches,
    parse_policy,
    txt_policy_id,
)
from mailiverse.outbound.service import OutboundConfig, build_transport
from mailiverse.outbound.transport import DirectTransport
from mailiverse.store import Database
from mailiverse.testing import IssuedCertificate
from mailiverse.webfetch import WebFetch
from tests.support.dnsserver import DnsServer
from tests.support.https_server import Answer, HttpsServer, issue_certificate, start_https_server
from tests.support.logs import captured
from tests.support.outbound import CANARY, clock, inbox, make_outbound, message
from tests.support.smarthost import SmtpTestServer, start_server

# -- the grammar ---------------------------------------------------------------------------------------------------


def test_a_policy_is_parsed_with_crlf_or_lf() -> None:
    """The RFC's example policy reads the same with CRLF and LF line ends; extensions are ignored."""
    text = "version: STSv1\nmode: enforce\nmx: mail.example.com\nmx: *.example.net\nmx: backupmx.example.com\n"
    expected = Policy("enforce", ("mail.example.com", "*.example.net", "backupmx.example.com"), 604800)
    for body in (text + "max_age: 604800\n", (text + "max_age: 604800\nx-ext: some value\n").replace("\n", "\r\n")):
        assert parse_policy(body.encode()) == expected


def test_mode_none_needs_no_mx_and_max_age_is_capped() -> None:
    """mode none may name no MX; a max_age over a year counts as a year; MX patterns are lower-cased."""
    assert parse_policy(b"version: STSv1\r\nmode: none\r\nmax_age: 9999999999\r\n") == Policy(
        "none", (), MAX_AGE_LIMIT_S
    )
    assert parse_policy(b"version: STSv1\nmode: testing\nmx: MX.Example.COM.\nmax_age: 0").mx == ("mx.example.com",)


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b"mode: enforce\nmx: a.example\nmax_age: 1\n", "version: STSv1"),
        (b"version: STSv2\nmode: enforce\nmx: a.example\nmax_age: 1\n", "version: STSv1"),
        (b"version: STSv1\nmode: Enforce\nmx: a.example\nmax_age: 1\n", "mode"),
        (b"version: STSv1\nmode: enforce\nmode: none\nmx: a.example\nmax_age: 1\n", "more than once"),
        (b"version: STSv1\nmode: enforce\nmx: a.example\n", "max_age"),
        (b"version: STSv1\nmode: enforce\nmx: a.example\nmax_age: -1\n", "max_age"),
        (b"version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 12345678901\n", "max_age"),
        (b"version: STSv1\nmode: enforce\nmax_age: 1\n", "names no mx"),
        (b"version: STSv1\nmode: enforce\nmx: *.*.example\nmax_age: 1\n", "not a host name"),
        (b"version: STSv1\nmode: enforce\nmx: a..example\nmax_age: 1\n", "not a host name"),
        (b"version: STSv1\nmode: enforce\nmx: mail_1.example\nmax_age: 1\n", "not a host name"),
        (b"version: STSv1\nmode: enforce\nmx: *\nmax_age: 1\n", "not a host name"),
        (b"version: STSv1\nmode: enforce\nmx: a.example b.example\nmax_age: 1\n", "not a host name"),
        (b"version : STSv1\nmode: enforce\nmx: a.example\nmax_age: 1\n", "key: value"),
        (b"version: STSv1\n\nmode: enforce\nmx: a.example\nmax_age: 1\n", "key: value"),
        (b"version: STSv1\nmode enforce\nmx: a.example\nmax_age: 1\n", "key: value"),
        (b"version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1\nx: a\x00b\n", "control characters"),
        (b"version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1\nx:\n", "empty value"),
        (b"version: STSv1\nmode: enforce\nmx: \xff.example\nmax_age: 1\n", "UTF-8"),
        (b"<html><body>Not found</body></html>", "key: value"),
        (b"", "version: STSv1"),
    ],
)
def test_malformed_policies_are_refused(body: bytes, why: str) -> None:
    """Every departure from the grammar is a PolicyError that says what is wrong."""
    with pytest.raises(PolicyError, match=why):
        parse_policy(body)


def test_oversized_and_overlong_policies_are_refused() -> None:
    """A policy over 64 KiB, or naming more than 100 MX patterns, is refused whole."""
    head = b"version: STSv1\nmode: enforce\nmax_age: 86400\n"
    with pytest.raises(PolicyError, match="over 65536 bytes"):
        parse_policy(head + b"x-pad: " + b"a" * 65536 + b"\n")
    with pytest.raises(PolicyError, match="more than 100 mx"):
        parse_policy(head + b"".join(b"mx: mx%d.example\n" % n for n in range(101)))


@given(st.binary(max_size=2000))
def test_any_bytes_give_a_policy_or_a_policy_error(body: bytes) -> None:
    """Whatever a server sends, parsing ends in a Policy or a PolicyError, never another exception."""
    try:
        policy = parse_policy(body)
    except PolicyError:
        return
    assert policy.mode in ("enforce", "testing", "none")


@given(
    st.lists(st.sampled_from(["version: STSv1", "mode: enforce", "mx: a.example", "max_age: 5", "x: y"]), max_size=8)
)
def test_shuffled_fields_parse_only_when_complete(lines: list[str]) -> None:
    """A policy parses exactly when it has each single field once and an MX; the order of lines does not matter."""
    complete = all(lines.count(key) == 1 for key in ("version: STSv1", "mode: enforce", "max_age: 5"))
    complete = complete and "mx: a.example" in lines
    try:
        parse_policy("\n".join(lines).encode())
    except PolicyError:
        assert not complete
    else:
        assert complete


@pytest.mark.parametrize(
    ("records", "expected"),
    [
        ([b"v=STSv1; id=20160831085700Z;"], "20160831085700Z"),
        ([b"v=STSv1;id=abc"], "abc"),
        ([b"v=STSv1; id=1; ext=value"], "1"),
        ([b"v=spf1 -all", b"v=STSv1; id=7"], "7"),
        ([b"v=STSv1; id=1", b"v=STSv1; id=2"], None),
        ([b"v=STSv1;"], None),
        ([b"v=STSv1; id=has-dash"], None),
        ([b"v=STSv1; id=" + b"a" * 33], None),
        ([b"v=STSv1; id=1; id=2"], None),
        ([b"v=STSv10; id=1"], None),
        ([b"V=STSv1; id=1"], None),
        ([b"v=STSv1; id=1; bad name=x"], None),
        ([b"v=STSv1; id=\xff"], None),
        ([], None),
    ],
)
def test_the_txt_record(records: list[bytes], expected: str | None) -> None:
    """Exactly one well-formed v=STSv1 record gives its id; anything else means no policy (§3.1)."""
    assert txt_policy_id(records) == expected


@pytest.mark.parametrize(
    ("pattern", "host", "expected"),
    [
        ("mail.example.com", "mail.example.com", True),
        ("mail.example.com", "MAIL.example.com.", True),
        ("mail.example.com", "mail2.example.com", False),
        ("*.example.com", "mx1.example.com", True),
        ("*.example.com", "example.com", False),
        ("*.example.com", "a.b.example.com", False),
        ("*.example.com", ".example.com", False),
    ],
)
def test_mx_patterns_match_one_label(pattern: str, host: str, expected: bool) -> None:
    """A wildcard stands for exactly one left-most label (§4.1)."""
    assert mx_matches(pattern, host) is expected


# -- real DNS, HTTPS and SMTP --------------------------------------------------------------------------------------

DOMAIN = "remote.test"
MX = "mx.remote.test"


def policy_text(mode: str, *mx: str, max_age: int = 86400) -> bytes:
    return ("version: STSv1\r\nmode: " + mode + "\r\n" + "".join(f"mx: {m}\r\n" for m in mx)).encode() + (
        f"max_age: {max_age}\r\n".encode()
    )


@dataclass
class World:
    """A recipient domain: its DNS, its MTA-STS policy server (certificate from ``policy_ca``), its MX."""

    dns: DnsServer
    https: HttpsServer
    policy_ca: IssuedCertificate
    tmp: Path

    def publish(self, mode: str, *mx: str, policy_id: str = "1", max_age: int = 86400) -> None:
        self.dns.zone.update({f"_mta-sts.{DOMAIN}": {"TXT": [f"v=STSv1; id={policy_id};"], "TTL": 5}})
        self.https.answers["/.well-known/mta-sts.txt"] = Answer(
            body=policy_text(mode, *mx, max_age=max_age), content_type="text/plain; charset=utf-8"
        )

    def fetcher(self, *trust: Path) -> WebFetch:
        return WebFetch(reactor, Resolver([self.dns.address], reactor=reactor), trust, port=self.https.port)

    def transport(self, smtp: SmtpTestServer, *trust: Path) -> DirectTransport:
        """Direct delivery as the appliance builds it, its roots the system's plus ``trust``."""
        config = OutboundConfig(mode="direct", hostname="mx.example.com", direct_port=smtp.number, smtp_timeout_s=10)
        resolver = Resolver([self.dns.address], reactor=reactor)
        fetch = WebFetch(reactor, resolver, trust, port=self.https.port, timeout_s=5)
        transport = build_transport(config, reactor=reactor, resolver=resolver, web_fetch=fetch)
        assert isinstance(transport, DirectTransport)
        return transport

    def smtp(self, *, tls: bool = True, names: tuple[str, ...] = (MX,)) -> SmtpTestServer:
        return start_server(self.tmp / f"smtp-{len(names)}-{tls}", tls=tls, names=names)


@pytest_twisted.async_yield_fixture
async def world(tmp_path: Path, dns_server: DnsServer) -> AsyncIterator[World]:
    """remote.test's MX and policy host both at 127.0.0.1; no policy published yet."""
    dns_server.zone.update(
        {
            DOMAIN: {"MX": [[10, MX]]},
            MX: {"A": ["127.0.0.1"]},
            f"mta-sts.{DOMAIN}": {"A": ["127.0.0.1"]},
        }
    )
    policy_ca = issue_certificate(tmp_path / "policy-pki", [f"mta-sts.{DOMAIN}"], "mta-sts test CA")
    https = start_https_server(policy_ca.cert_path, policy_ca.key_path)
    try:
        yield World(dns_server, https, policy_ca, tmp_path)
    finally:
        await https.stop()


async def deliver(transport: DirectTransport) -> list[tuple[int, str]]:
    results = await transport.deliver(
        mail_from="alice@example.com", recipients=[f"bob@{DOMAIN}"], domain=DOMAIN, message=message()
    )
    return [(r.code, r.text) for r in results]


def leaf_fingerprint(smtp: SmtpTestServer) -> str:
    assert smtp.ca_cert is not None
    leaf = x509.load_pem_x509_certificates((smtp.ca_cert.parent / "ca-issued.crt").read_bytes())[0]
    return leaf.fingerprint(hashes.SHA256()).hex()


@pytest_twisted.ensureDeferred
async def test_the_policy_is_fetched_once_and_kept_for_max_age(world: World) -> None:
    """The first lookup fetches the policy; later ones with the same TXT id do not; a new id fetches again; a
    missing TXT record keeps the policy in force until max_age runs out, and then there is none."""
    world.publish("enforce", MX, max_age=3600)
    tick = Clock()
    # the resolver's cache on the test's clock too, so a changed TXT record is seen once its 5 s are over
    resolver = Resolver([world.dns.address], reactor=reactor, cache=AnswerCache(tick))
    fetch = WebFetch(reactor, resolver, [world.policy_ca.ca_cert_path], port=world.https.port)
    policies = MtaSts(resolver, fetch, tick)
    first = await policies.policy(DOMAIN)
    assert first == Policy("enforce", (MX,), 3600, "1")
    assert await policies.policy(DOMAIN.upper() + ".") == first
    assert len(world.https.seen) == 1
    assert world.https.seen[0].accept == b"text/plain"
    world.publish("testing", MX, policy_id="2", max_age=3600)
    tick.advance(5)
    assert (await policies.policy(DOMAIN)) == Policy("testing", (MX,), 3600, "2")
    assert len(world.https.seen) == 2
    world.dns.zone.update({f"_mta-sts.{DOMAIN}": {"TXT": ["v=spf1 -all"]}})
    tick.advance(3599)
    assert (await policies.policy(DOMAIN)) is not None
    tick.advance(1)
    assert await policies.policy(DOMAIN) is None
    assert len(world.https.seen) == 2


@pytest.mark.parametrize(
    "answer",
    [
        Answer(status=302, body=b"", headers=(("location", "https://elsewhere.test/"),)),
        Answer(status=404, content_type="text/plain", body=policy_text("enforce", MX)),
        Answer(content_type="text/html", body=policy_text("enforce", MX)),
        Answer(content_type="text/plain", body=b"version: STSv1\nmode: enforce\n"),
        Answer(content_type="text/plain", stream=200_000),
    ],
    ids=["redirect", "404", "html", "malformed", "oversized"],
)
@pytest_twisted.ensureDeferred
async def test_a_policy_that_cannot_be_had_is_no_policy(world: World, answer: Answer) -> None:
    """A redirect, an error status, another media type, a malformed or an oversized policy: the domain is treated
    as publishing none (and the redirect is not followed)."""
    world.dns.zone.update({f"_mta-sts.{DOMAIN}": {"TXT": ["v=STSv1; id=1"]}})
    world.https.answers["/.well-known/mta-sts.txt"] = answer
    fetch = world.fetcher(world.policy_ca.ca_cert_path)
    assert await MtaSts(fetch.resolver, fetch, reactor).policy(DOMAIN) is None
    assert len(world.https.seen) == 1


@pytest_twisted.ensureDeferred
async def test_enforce_with_a_matching_mx_and_a_trusted_certificate_delivers(world: World) -> None:
    """enforce, the MX named by the policy, its certificate from a --trust-ca root: delivered over TLS, and the
    verified certificate is recorded in the debug log, with nothing of the message."""
    world.publish("enforce", "*.remote.test")
    smtp = world.smtp()
    assert smtp.ca_cert is not None
    transport = world.transport(smtp, world.policy_ca.ca_cert_path, smtp.ca_cert)
    set_level(LogLevel.debug)
    try:
        with captured() as events:
            results = await deliver(transport)
    finally:
        set_level(DEFAULT_LEVEL)
        await smtp.stop()
    assert [code for code, _ in results] == [250], results
    [received] = smtp.state.received
    assert received.tls and CANARY in received.data
    [record] = [e for e in events if e.get("verified_certificate_sha256")]
    assert record["log_level"] is LogLevel.debug
    assert (record["host"], record["mode"]) == (MX, "enforce")
    assert record["verified_certificate_sha256"] == leaf_fingerprint(smtp)
    ours = [event for event in events if str(event.get("log_namespace", "")).startswith("mailiverse")]
    assert ours and not any(CANARY.decode() in repr(event) or "bob@" in repr(event) for event in ours)


@pytest_twisted.ensureDeferred
async def test_enforce_with_an_untrusted_certificate_is_deferred_never_sent_in_plain_text(
    world: World, database: Database, data_dir: Path
) -> None:
    """enforce, but the MX's certificate is from no trusted root: through the real queue the recipient stays queued
    with a 4xx saying TLS failed under the policy; the MX never received the message, in TLS or in plain text."""
    world.publish("enforce", MX)
    smtp = world.smtp()
    transport = world.transport(smtp, world.policy_ca.ca_cert_path)
    outbound = make_outbound(database, data_dir, transport, inbox(), clock())
    try:
        queue_id = await outbound.submit(
            user="alice", mail_from="alice@example.com", recipients=[f"bob@{DOMAIN}"], message=message()
        )
        await outbound.run_pending()
    finally:
        await smtp.stop()
    [state] = await outbound.status(queue_id) or []
    assert state.status == "pending"
    assert state.last_error is not None
    assert state.last_error.startswith(f"451 {MX}: TLS failed: the certificate is not trusted")
    assert f"the MTA-STS policy of {DOMAIN} (enforce) requires TLS verified for {MX}; not sent" in state.last_error
    assert smtp.state.received == []
    assert smtp.state.connections == 1  # one verified try; no unverified or plain-text one after it


@pytest_twisted.ensureDeferred
async def test_enforce_with_a_certificate_for_another_name_is_deferred(world: World) -> None:
    """enforce, a trusted certificate that does not name the MX host: deferred, nothing received."""
    world.publish("enforce", MX)
    smtp = world.smtp(names=("other.remote.test",))
    assert smtp.ca_cert is not None
    transport = world.transport(smtp, world.policy_ca.ca_cert_path, smtp.ca_cert)
    try:
        [(code, text)] = await deliver(transport)
    finally:
        await smtp.stop()
    assert code == 451 and "TLS failed" in text
    assert smtp.state.received == []


@pytest_twisted.ensureDeferred
async def test_enforce_with_an_mx_the_policy_does_not_name_is_deferred(world: World) -> None:
    """enforce with mx patterns that miss the domain's MX: no connection at all, a 4xx naming the policy."""
    world.publish("enforce", "*.elsewhere.test")
    smtp = world.smtp()
    assert smtp.ca_cert is not None
    transport = world.transport(smtp, world.policy_ca.ca_cert_path, smtp.ca_cert)
    try:
        [(code, text)] = await deliver(transport)
    finally:
        await smtp.stop()
    assert code == 451
    assert text.startswith(f"{DOMAIN}: no MX host matches the domain's MTA-STS policy (mode enforce")
    assert smtp.state.connections == 0


@pytest_twisted.ensureDeferred
async def test_enforce_with_an_mx_that_offers_no_starttls_is_deferred(world: World) -> None:
    """enforce, an MX without STARTTLS: deferred with the policy named; no MAIL FROM is ever sent in plain text."""
    world.publish("enforce", MX)
    smtp = world.smtp(tls=False)
    transport = world.transport(smtp, world.policy_ca.ca_cert_path)
    try:
        [(code, text)] = await deliver(transport)
    finally:
        await smtp.stop()
    assert code == 451 and f"the MTA-STS policy of {DOMAIN} (enforce)" in text
    assert smtp.state.received == []


@pytest_twisted.ensureDeferred
async def test_testing_mode_delivers_over_unverified_tls(world: World) -> None:
    """testing, the MX's certificate untrusted: delivered as today, over opportunistic (unverified) TLS."""
    world.publish("testing", MX)
    smtp = world.smtp()
    transport = world.transport(smtp, world.policy_ca.ca_cert_path)
    try:
        results = await deliver(transport)
    finally:
        await smtp.stop()
    assert [code for code, _ in results] == [250]
    [received] = smtp.state.received
    assert received.tls


@pytest.mark.parametrize("trusted", [True, False])
@pytest_twisted.ensureDeferred
async def test_without_a_policy_trust_ca_tries_verified_tls_first(world: World, trusted: bool) -> None:
    """No policy, --trust-ca given: a certificate that verifies is used verified (and recorded); one that does not
    still gets the mail over unverified TLS, as without the option."""
    smtp = world.smtp()
    assert smtp.ca_cert is not None
    transport = world.transport(smtp, *([smtp.ca_cert] if trusted else [world.policy_ca.ca_cert_path]))
    set_level(LogLevel.debug)
    try:
        with captured() as events:
            results = await deliver(transport)
    finally:
        set_level(DEFAULT_LEVEL)
        await smtp.stop()
    assert [code for code, _ in results] == [250]
    assert [r.tls for r in smtp.state.received] == [True]
    verified = [e for e in events if e.get("verified_certificate_sha256")]
    assert len(verified) == (1 if trusted else 0)
    assert smtp.state.connections == (1 if trusted else 2)


@pytest_twisted.ensureDeferred
async def test_a_policy_host_with_an_untrusted_certificate_means_no_policy(world: World) -> None:
    """An enforce policy served with a certificate no root trusts is not believed: delivery goes on as without a
    policy (opportunistic TLS), as RFC 8461 §3.3 asks."""
    world.publish("enforce", "*.elsewhere.test")
    smtp = world.smtp()
    transport = world.transport(smtp)
    try:
        results = await deliver(transport)
    finally:
        await smtp.stop()
    assert [code for code, _ in results] == [250]
