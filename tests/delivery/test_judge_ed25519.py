"""The judge and ed25519-sha256 DKIM signatures (RFC 8463), over a DNS held in a dict.

The signatures are not ours: the signed message of RFC 8463's Appendix A.3, which carries one
ed25519-sha256 and one rsa-sha256 signature, with the keys Appendix A.2 publishes, verified as it is
printed there (its t= and body byte for byte). OpenDKIM signs ed25519 too, through the real appliance
(tests/integration/test_dkim_ed25519.py).
"""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailiverse.delivery.dnschannel import Enquirer
from mailiverse.delivery.judge import judge
from mailiverse.delivery.verdicts import AuthResult, Judgement, JudgeRequest
from tests.support.fakedns import FakeZone

DOMAIN = "football.example.com"
ED25519_KEY = "brisbane._domainkey.football.example.com"
RSA_KEY = "test._domainkey.football.example.com"
# RFC 8463 Appendix A.2: the two key records.
ED25519_RECORD = "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
RSA_RECORD = (
    "v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWR"
    "iGs5V6NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQiY/J16JYi0Qvx/byYzCNb3W91y3FutAC"
    "DfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqMKrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3"
    "Ip3G+2kryOTIKT+l/K4w3QIDAQAB"
)
# RFC 8463 Appendix A.3: the signed message, lines as printed, CRLF between them.
ED25519_SIGNATURE = (
    "DKIM-Signature: v=1; a=ed25519-sha256; c=relaxed/relaxed;",
    " d=football.example.com; i=@football.example.com;",
    " q=dns/txt; s=brisbane; t=1528637909; h=from : to :",
    " subject : date : message-id : from : subject : date;",
    " bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;",
    " b=/gCrinpcQOoIfuHNQIbq4pgh9kyIK3AQUdt9OdqQehSwhEIug4D11Bus",
    " Fa3bT3FY5OsU7ZbnKELq+eXdp1Q1Dw==",
)
RSA_SIGNATURE = (
    "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;",
    " d=football.example.com; i=@football.example.com;",
    " q=dns/txt; s=test; t=1528637909; h=from : to : subject :",
    " date : message-id : from : subject : date;",
    " bh=2jUSOH9NhtVGCQWNr9BrIAPreKQjO6Sn7XIkfJVOzv8=;",
    " b=F45dVWDfMbQDGHJFlXUNB2HKfbCeLRyhDXgFpEL8GwpsRe0IeIixNTe3",
    " DhCVlUrSjV4BwcVcOF6+FF3Zo9Rpo1tFOeS9mPYQTnGdaSGsgeefOsk2Jz",
    " dA+L10TeYt9BgDfQNZtKdN1WO//KgIqXP7OdEFE4LjFYNcUxZQ4FADY+8=",
)
UNSIGNED = (
    "From: Joe SixPack <joe@football.example.com>",
    "To: Suzie Q <suzie@shopping.example.net>",
    "Subject: Is dinner ready?",
    "Date: Fri, 11 Jul 2003 21:00:37 -0700 (PDT)",
    "Message-ID: <20030712040037.46341.5F8J@football.example.com>",
    "",
    "Hi.",
    "",
    "We lost the game.  Are you hungry yet?",
    "",
    "Joe.",
    "",
)
CLIENT = "192.0.2.10"


def rfc_message(*signatures: tuple[str, ...]) -> bytes:
    lines = [line for signature in signatures for line in signature] + list(UNSIGNED)
    return "\r\n".join(lines).encode("ascii")


def rfc_zone(dmarc: str = "v=DMARC1; p=reject") -> FakeZone:
    """football.example.com as RFC 8463 publishes it, with an SPF record that does not allow the client
    (so DMARC passes only through DKIM) and a DMARC record."""
    return FakeZone(
        {
            (DOMAIN, "TXT"): ("v=spf1 -all",),
            (ED25519_KEY, "TXT"): (ED25519_RECORD,),
            (RSA_KEY, "TXT"): (RSA_RECORD,),
            (f"_dmarc.{DOMAIN}", "TXT"): (dmarc,),
        }
    )


def request() -> JudgeRequest:
    return JudgeRequest(
        CLIENT, "mx.football.example.com", "joe@football.example.com", "mx.example.org", ("example.org",)
    )


def dkim_results(judgement: Judgement) -> list[AuthResult]:
    return [r for r in judgement.results if r.method == "dkim"]


def result(judgement: Judgement, method: str) -> AuthResult:
    return next(r for r in judgement.results if r.method == method)


def test_the_rfc_8463_ed25519_signature_passes_and_aligns_for_dmarc() -> None:
    """RFC 8463's ed25519-sha256 signature alone, as printed (t=1528637909): dkim=pass with d= and s=, and
    though SPF fails, DMARC passes through it under p=reject: a verified sender."""
    judgement = judge(rfc_message(ED25519_SIGNATURE), request(), Enquirer(rfc_zone()))
    assert dkim_results(judgement) == [AuthResult("dkim", "pass", domain=DOMAIN, selector="brisbane")]
    assert result(judgement, "spf").result == "fail"
    assert result(judgement, "dmarc") == AuthResult("dmarc", "pass", domain=DOMAIN, policy="reject")
    assert (judgement.verdict, judgement.action) == ("verified", "accept")


def test_both_signatures_of_the_rfc_8463_message_are_verified_and_recorded() -> None:
    """The message as RFC 8463 prints it, ed25519-sha256 above rsa-sha256: each verified and recorded, in order."""
    zone = rfc_zone()
    judgement = judge(rfc_message(ED25519_SIGNATURE, RSA_SIGNATURE), request(), Enquirer(zone))
    assert dkim_results(judgement) == [
        AuthResult("dkim", "pass", domain=DOMAIN, selector="brisbane"),
        AuthResult("dkim", "pass", domain=DOMAIN, selector="test"),
    ]
    assert {(ED25519_KEY, "TXT"), (RSA_KEY, "TXT")} <= set(zone.asked)
    assert result(judgement, "dmarc").result == "pass"


@pytest.mark.parametrize(
    ("before", "after"),
    [(b"We lost the game.", b"We won the game."), (b"Is dinner ready?", b"Is lunch ready?")],
    ids=["body", "signed-header"],
)
def test_a_tampered_rfc_8463_message_fails_both_signatures_and_dmarc_rejects(before: bytes, after: bytes) -> None:
    """One word changed (in the body, or in a signed header): both signatures fail, DMARC fails and p=reject
    refuses the message."""
    tampered = rfc_message(ED25519_SIGNATURE, RSA_SIGNATURE).replace(before, after)
    judgement = judge(tampered, request(), Enquirer(rfc_zone()))
    assert [r.result for r in dkim_results(judgement)] == ["fail", "fail"]
    assert result(judgement, "dmarc").result == "fail"
    assert (judgement.verdict, judgement.action, judgement.reason) == ("failed", "reject", "dmarc-reject")


def test_a_passing_ed25519_signature_aligns_though_the_rsa_one_fails() -> None:
    """The RSA key record replaced by a key that did not sign: rsa-sha256 fails, ed25519-sha256 still passes and
    carries DMARC (one aligned pass is enough, RFC 7489 §4.2)."""
    other = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    der = other.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    zone = rfc_zone()
    zone.records[(RSA_KEY, "TXT")] = ("v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode("ascii"),)
    judgement = judge(rfc_message(ED25519_SIGNATURE, RSA_SIGNATURE), request(), Enquirer(zone))
    assert [r.result for r in dkim_results(judgement)] == ["pass", "fail"]
    assert result(judgement, "dmarc").result == "pass"
    assert judgement.verdict == "verified"


@pytest.mark.parametrize(
    "record",
    [
        "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIa",  # 27 bytes, not 32
        "v=DKIM1; k=ed25519; p=MCowBQYDK2VwAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",  # wrapped in SPKI
    ],
    ids=["short", "spki"],
)
def test_an_ed25519_key_record_that_is_not_32_raw_bytes_is_a_permanent_error(record: str) -> None:
    """RFC 8463 §4.2: p= is the bare 32-byte key; a short one, or one in a SubjectPublicKeyInfo wrapper, is a key
    the signature cannot be verified with: permerror, not fail."""
    zone = rfc_zone()
    zone.records[(ED25519_KEY, "TXT")] = (record,)
    judgement = judge(rfc_message(ED25519_SIGNATURE), request(), Enquirer(zone))
    assert dkim_results(judgement) == [AuthResult("dkim", "permerror", domain=DOMAIN, selector="brisbane")]
