"""The judge of a received message's authenticity (SPF, DKIM, ARC, DMARC) over a DNS held in a dict, and the
policy it leads to; signatures made by dkimpy and by an independent signer, OpenDKIM."""

from __future__ import annotations

import base64
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailiverse.delivery.dnschannel import Enquirer
from mailiverse.delivery.judge import judge
from mailiverse.delivery.verdicts import AuthResult, Judgement, JudgeRequest
from tests.support.fakedns import FakeZone
from tests.support.opendkim import generate_key, sign_with_libopendkim, sign_with_testmsg

AUTHSERV_ID = "mail.example.org"
CLIENT = "192.0.2.10"
MESSAGE = (
    b"From: Bob <bob@remote.test>\r\nTo: alice@example.org\r\nSubject: hello\r\n"
    b"Date: Sat, 21 Nov 2026 10:00:00 +0000\r\nMessage-ID: <1@remote.test>\r\n\r\nHi Alice.\r\n"
)
_PRIVATE = rsa.generate_private_key(public_exponent=65537, key_size=2048)
SIGNING_KEY = _PRIVATE.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
)
KEY_RECORD = "v=DKIM1; k=rsa; p=" + base64.b64encode(
    _PRIVATE.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
).decode("ascii")


def remote_zone(spf: str = "v=spf1 ip4:192.0.2.10 -all", dmarc: str = "v=DMARC1; p=reject") -> FakeZone:
    return FakeZone(
        {
            ("remote.test", "TXT"): (spf,),
            ("sel._domainkey.remote.test", "TXT"): (KEY_RECORD,),
            ("_dmarc.remote.test", "TXT"): (dmarc,),
        }
    )


def request(mail_from: str = "bob@remote.test", ip: str = CLIENT, **changes: object) -> JudgeRequest:
    fields: dict[str, object] = {
        "client_ip": ip,
        "helo": "mx.remote.test",
        "mail_from": mail_from,
        "authserv_id": AUTHSERV_ID,
        "local_domains": ("example.org",),
    }
    fields.update(changes)
    return JudgeRequest(**fields)  # type: ignore[arg-type]


def signed(message: bytes = MESSAGE, domain: bytes = b"remote.test", selector: bytes = b"sel") -> bytes:
    signature: bytes = dkim.sign(message, selector, domain, SIGNING_KEY, include_headers=[b"from", b"to", b"subject"])
    return signature + message


def result(judgement: Judgement, method: str) -> AuthResult:
    return next(r for r in judgement.results if r.method == method)


def test_a_dkim_signature_that_verifies_passes_and_aligns_for_dmarc() -> None:
    """dkimpy's rsa-sha256 signature for the From domain: dkim=pass with d= and s=, DMARC pass, a verified sender."""
    zone = remote_zone(spf="v=spf1 -all")
    judgement = judge(signed(), request(), Enquirer(zone))
    assert result(judgement, "dkim") == AuthResult("dkim", "pass", domain="remote.test", selector="sel")
    assert result(judgement, "spf").result == "fail"
    assert result(judgement, "dmarc") == AuthResult("dmarc", "pass", domain="remote.test", policy="reject")
    assert (judgement.verdict, judgement.action) == ("verified", "accept")


def test_a_tampered_body_fails_dkim_and_dmarc_rejects() -> None:
    """A body changed after signing: dkim=fail; with SPF failing too, DMARC fails and p=reject refuses it."""
    tampered = signed().replace(b"Hi Alice.", b"Hi Alice, send money.")
    judgement = judge(tampered, request(ip="198.51.100.7"), Enquirer(remote_zone()))
    assert result(judgement, "dkim").result == "fail"
    assert result(judgement, "dmarc").result == "fail"
    assert (judgement.verdict, judgement.action, judgement.reason) == ("failed", "reject", "dmarc-reject")


def test_a_missing_key_is_a_permanent_error_and_an_unanswered_one_a_temporary_error() -> None:
    """RFC 6376 §6.1.2: no key record is permerror; no DNS answer is temperror, and under p=reject the
    message is deferred (451) rather than refused, since a retry may pass."""
    zone = remote_zone()
    del zone.records[("sel._domainkey.remote.test", "TXT")]
    missing = judge(signed(), request(ip="198.51.100.7"), Enquirer(zone))
    assert result(missing, "dkim").result == "permerror"
    assert missing.action == "reject"

    zone = remote_zone()
    zone.failing = ("sel._domainkey.remote.test",)
    unanswered = judge(signed(), request(ip="198.51.100.7"), Enquirer(zone))
    assert result(unanswered, "dkim").result == "temperror"
    assert (unanswered.action, unanswered.reason) == ("defer", "dns")


def test_a_malformed_key_record_is_a_permanent_error() -> None:
    """A key record whose p= is not a key: permerror, not fail."""
    zone = remote_zone()
    zone.records[("sel._domainkey.remote.test", "TXT")] = ("v=DKIM1; k=rsa; p=bm90IGEga2V5",)
    assert result(judge(signed(), request(), Enquirer(zone)), "dkim").result == "permerror"


@pytest.mark.parametrize(
    ("policy", "action", "reason"),
    [("reject", "reject", "dmarc-reject"), ("quarantine", "quarantine", "dmarc-quarantine"), ("none", "accept", "")],
)
def test_dmarc_failure_follows_the_published_policy(policy: str, action: str, reason: str) -> None:
    """Unsigned mail from an address SPF does not allow: DMARC fails, and p= decides (reject, quarantine, none)."""
    zone = remote_zone(dmarc=f"v=DMARC1; p={policy}")
    judgement = judge(MESSAGE, request(ip="198.51.100.7"), Enquirer(zone))
    assert result(judgement, "dmarc") == AuthResult("dmarc", "fail", domain="remote.test", policy=policy)
    assert (judgement.verdict, judgement.action, judgement.reason) == ("failed", action, reason)


def test_dmarc_holds_for_a_domain_with_a_hyphen() -> None:
    """authheaders reads bob@my-bank.test as domain "my" and finds no policy; mended, my-bank.test's p=reject
    refuses a forgery, and the SPF pass of a genuine MAIL FROM at my-bank.test aligns."""
    zone = FakeZone(
        {
            ("my-bank.test", "TXT"): ("v=spf1 ip4:192.0.2.10 -all",),
            ("_dmarc.my-bank.test", "TXT"): ("v=DMARC1; p=reject",),
        }
    )
    forged = MESSAGE.replace(b"bob@remote.test", b"ceo@my-bank.test")
    judgement = judge(forged, request(mail_from="x@attacker.test", ip="198.51.100.7"), Enquirer(zone))
    assert result(judgement, "dmarc") == AuthResult("dmarc", "fail", domain="my-bank.test", policy="reject")
    assert judgement.action == "reject"
    genuine = judge(forged, request(mail_from="ceo@my-bank.test"), Enquirer(zone))
    assert (result(genuine, "dmarc").result, genuine.verdict) == ("pass", "verified")


def test_an_unanswered_dmarc_lookup_defers_the_message() -> None:
    """The policy is unknown when _dmarc gets no answer: 451 (defer), never a silent accept."""
    zone = remote_zone()
    zone.failing = ("_dmarc.remote.test",)
    judgement = judge(MESSAGE, request(), Enquirer(zone))
    assert result(judgement, "dmarc").result == "temperror"
    assert (judgement.verdict, judgement.action, judgement.reason) == ("unverified", "defer", "dns")


def test_no_dmarc_record_leaves_the_sender_unverified() -> None:
    """A domain without DMARC: dmarc=none, stored as it is, the sender neither verified nor failed."""
    zone = remote_zone()
    del zone.records[("_dmarc.remote.test", "TXT")]
    judgement = judge(signed(), request(), Enquirer(zone))
    assert result(judgement, "dmarc").result == "none"
    assert (judgement.verdict, judgement.action) == ("unverified", "accept")


@pytest.mark.parametrize(
    ("record", "ip", "expected"),
    [
        ("v=spf1 ip4:192.0.2.0/24 -all", CLIENT, "pass"),
        ("v=spf1 ip4:192.0.2.0/24 ~all", "198.51.100.7", "softfail"),
        ("v=spf1 ip4:192.0.2.0/24 -all", "198.51.100.7", "fail"),
        ("v=spf1 ip4:192.0.2.0/24 ?all", "198.51.100.7", "neutral"),
        ("v=spf1 mx -all", CLIENT, "pass"),
        ("v=spf1 include:_spf.remote.test -all", "2001:db8::25", "pass"),
    ],
)
def test_spf_of_the_mail_from(record: str, ip: str, expected: str) -> None:
    """pyspf's result for the MAIL FROM domain, its mechanisms (ip4, mx, include, ip6) resolved over the enquirer."""
    zone = remote_zone(spf=record)
    zone.records[("remote.test", "MX")] = ((10, "mx.remote.test"),)
    zone.records[("mx.remote.test", "A")] = (CLIENT,)
    zone.records[("_spf.remote.test", "TXT")] = ("v=spf1 ip6:2001:db8::/32 -all",)
    judgement = judge(MESSAGE, request(ip=ip), Enquirer(zone))
    assert judgement.results[0] == AuthResult("spf", expected, domain="remote.test", identity="mailfrom")
    assert judgement.results[1] == AuthResult("spf", "none", domain="mx.remote.test", identity="helo")


def test_without_a_client_address_spf_asks_nothing_and_says_none() -> None:
    """Mail an MTA in front handed over without naming its client (LMTP, mailiverse-deliver): no SPF question is
    asked (a -all record would fail everyone), SPF says ``none``, and DMARC cannot pass on it."""
    zone = remote_zone(spf="v=spf1 ip4:192.0.2.0/24 -all")
    enquirer = Enquirer(zone)
    judgement = judge(MESSAGE, request(ip=""), enquirer)
    assert judgement.results[0] == AuthResult("spf", "none", domain="remote.test", identity="mailfrom")
    assert [r.method for r in judgement.results].count("spf") == 1
    assert result(judgement, "dmarc").result != "pass"


def test_spf_of_a_bounce_checks_the_helo_name_and_counts_for_dmarc() -> None:
    """MAIL FROM:<> : SPF checks the HELO name (postmaster@helo), and DMARC aligns on it."""
    zone = remote_zone()
    zone.records[("mx.remote.test", "TXT")] = ("v=spf1 ip4:192.0.2.10 -all",)
    judgement = judge(MESSAGE, request(mail_from=""), Enquirer(zone))
    assert judgement.results[0] == AuthResult("spf", "pass", domain="mx.remote.test", identity="helo")
    assert [r.method for r in judgement.results].count("spf") == 1
    assert (result(judgement, "dmarc").result, judgement.verdict) == ("pass", "verified")


def test_spf_lookups_are_bounded() -> None:
    """An SPF record that includes itself over and over asks a bounded number of questions and ends in an error."""
    zone = FakeZone({(f"l{n}.remote.test", "TXT"): (f"v=spf1 include:l{n + 1}.remote.test -all",) for n in range(100)})
    zone.records[("remote.test", "TXT")] = ("v=spf1 include:l0.remote.test -all",)
    judgement = judge(MESSAGE, request(), Enquirer(zone))
    assert judgement.results[0].result == "permerror"  # RFC 7208 §4.6.4: more than 10 DNS mechanisms
    assert len(zone.asked) <= 20


def test_the_message_budget_of_questions_holds_across_checks() -> None:
    """With an Enquirer allowed 3 questions, the fourth and later lookups fail as temperror without being asked."""
    zone = remote_zone()
    judgement = judge(signed(), request(), Enquirer(zone, max_enquiries=3))
    assert len(zone.asked) == 3
    assert result(judgement, "dmarc").result == "temperror"
    assert judgement.action == "defer"


def test_a_local_from_is_refused_without_any_lookup() -> None:
    """From: alice@example.org arriving from outside: refused (550) whatever DNS would say; DNS is never asked."""
    spoof = MESSAGE.replace(b"From: Bob <bob@remote.test>", b"From: Alice <alice@example.org>")
    zone = remote_zone()
    judgement = judge(spoof, request(mail_from="alice@example.org"), Enquirer(zone))
    assert (judgement.verdict, judgement.action, judgement.reason) == ("failed", "reject", "local-domain")
    assert zone.asked == []
    second_from = MESSAGE.replace(b"To:", b"From: alice@EXAMPLE.ORG.\r\nTo:")
    assert judge(second_from, request(), Enquirer(zone)).reason == "local-domain"
    appliance_itself = MESSAGE.replace(b"bob@remote.test", b"root@mail.example.org")
    assert judge(appliance_itself, request(), None).reason == "local-domain"


def test_without_dns_only_the_local_domain_rule_applies() -> None:
    """No resolver (dns=False): remote mail is accepted unjudged, with no results to record."""
    judgement = judge(signed(), request(dns=False), None)
    assert judgement == Judgement("unverified")


def _arc_sealed(message: bytes, sealer: bytes = b"lists.example.net") -> bytes:
    """``message`` as a mailing list passes it on: its own results header, then an ARC set sealed by ``sealer``."""
    with_results = b"Authentication-Results: " + sealer + b"; dkim=pass header.d=remote.test\r\n" + message
    headers = dkim.arc_sign(with_results, b"arc", sealer, SIGNING_KEY, sealer, include_headers=[b"from", b"subject"])
    return b"".join(headers) + with_results


def test_an_arc_chain_validates_and_a_trusted_sealer_overrides_a_dmarc_reject() -> None:
    """A list changed the body (DKIM fails, DMARC p=reject fails) but sealed an ARC chain: arc=pass naming the
    sealer; the message is refused unless that sealer is trusted, and then accepted (unverified)."""
    forwarded = _arc_sealed(signed().replace(b"Hi Alice.", b"Hi Alice.\r\n-- \r\nthe list footer"))
    zone = remote_zone()
    zone.records[("arc._domainkey.lists.example.net", "TXT")] = (KEY_RECORD,)
    untrusted = judge(forwarded, request(ip="198.51.100.7"), Enquirer(zone))
    assert result(untrusted, "arc") == AuthResult("arc", "pass", domain="lists.example.net")
    assert result(untrusted, "dkim").result == "fail"
    assert untrusted.action == "reject"
    trusted = judge(forwarded, request(ip="198.51.100.7", trusted_arc_sealers=("lists.example.net",)), Enquirer(zone))
    assert (trusted.verdict, trusted.action) == ("unverified", "accept")


def test_a_broken_arc_chain_fails() -> None:
    """An ARC set whose seal's key is missing does not validate: arc=fail, and it vouches for nothing."""
    forwarded = _arc_sealed(MESSAGE)
    judgement = judge(forwarded, request(trusted_arc_sealers=("lists.example.net",)), Enquirer(remote_zone()))
    assert result(judgement, "arc").result == "fail"


def test_every_signature_is_verified() -> None:
    """Two signatures, the first (a third party's) without a key, the second the author's: both are reported,
    and the author's pass aligns."""
    message = signed()
    twice = dkim.sign(message, b"s2", b"esp.test", SIGNING_KEY, include_headers=[b"from"]) + message
    judgement = judge(twice, request(), Enquirer(remote_zone()))
    dkim_results = [r for r in judgement.results if r.method == "dkim"]
    assert dkim_results == [
        AuthResult("dkim", "permerror", domain="esp.test", selector="s2"),
        AuthResult("dkim", "pass", domain="remote.test", selector="sel"),
    ]
    assert judgement.verdict == "verified"


def test_a_libopendkim_rsa_sha256_signature_passes(tmp_path: Path) -> None:
    """A message signed by an independent implementation (OpenDKIM's library, rsa-sha256): our judge passes
    it and DMARC aligns; the same message tampered fails."""
    key = generate_key(tmp_path / "keys", "remote.test", "od")
    zone = remote_zone()
    zone.records[(key.name, "TXT")] = (key.record,)
    message = sign_with_libopendkim(MESSAGE, key)
    judgement = judge(message, request(ip="198.51.100.7"), Enquirer(zone))
    assert result(judgement, "dkim") == AuthResult("dkim", "pass", domain="remote.test", selector="od")
    assert judgement.verdict == "verified"
    tampered = judge(message.replace(b"Alice.", b"Alice!"), request(ip="198.51.100.7"), Enquirer(zone))
    assert result(tampered, "dkim").result == "fail"


def test_an_opendkim_testmsg_signature_verifies_but_rsa_sha1_is_not_accepted(tmp_path: Path) -> None:
    """opendkim-testmsg signs with rsa-sha1: the signature verifies (dkim=policy, not fail), but RFC 8301 lets
    no verifier accept SHA-1, so it does not count for DMARC; tampered, it fails."""
    key = generate_key(tmp_path / "keys", "remote.test", "tm")
    zone = remote_zone()
    zone.records[(key.name, "TXT")] = (key.record,)
    message = sign_with_testmsg(MESSAGE, key)
    assert b"a=rsa-sha1" in message
    judgement = judge(message, request(ip="198.51.100.7"), Enquirer(zone))
    assert result(judgement, "dkim") == AuthResult("dkim", "policy", domain="remote.test", selector="tm")
    assert result(judgement, "dmarc").result == "fail"
    tampered = judge(message.replace(b"Alice.", b"Alice!"), request(ip="198.51.100.7"), Enquirer(zone))
    assert result(tampered, "dkim").result == "fail"


def test_ed25519_signatures_verify() -> None:
    """An ed25519-sha256 signature (RFC 8463) passes."""
    pytest.importorskip("nacl", reason="dkimpy verifies ed25519 with PyNaCl, which is not installed")
    from cryptography.hazmat.primitives.asymmetric import ed25519

    private = ed25519.Ed25519PrivateKey.generate()
    seed = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    public = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    message = (
        dkim.sign(MESSAGE, b"ed", b"remote.test", base64.b64encode(seed), signature_algorithm=b"ed25519-sha256")
        + MESSAGE
    )
    zone = remote_zone()
    zone.records[("ed._domainkey.remote.test", "TXT")] = ("v=DKIM1; k=ed25519; p=" + base64.b64encode(public).decode(),)
    assert result(judge(message, request(), Enquirer(zone)), "dkim").result == "pass"
