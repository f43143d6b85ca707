"""Sealing a judged message: our results header on the stored original, the ``authentication`` member in the
twin, nothing sealed when it is refused, quarantined mail's paths per account; and the judgement as the main
process reads it back from a (possibly subverted) worker."""

from __future__ import annotations

import base64
import dataclasses
import json
from typing import Any

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailiverse.crypto.formats import open_mail_object
from mailiverse.crypto.keys import generate_private_key, public_key_der
from mailiverse.delivery.dnschannel import Enquirer
from mailiverse.delivery.policy import as_displayed
from mailiverse.delivery.resultsheader import results_header
from mailiverse.delivery.sealing import SealedMeta, SealJob, seal_message
from mailiverse.delivery.verdicts import AuthResult, Judgement, JudgeRequest
from mailiverse.mime.limits import Limits
from mailiverse.mime.twin import convert
from tests.support.fakedns import FakeZone
from tests.support.waiting import MemorySink

PRIVATE_KEY = generate_private_key()
PUBLIC_KEY = public_key_der(PRIVATE_KEY)
_SIGNER = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RECEIVED = b"Received: from mx.remote.test ([192.0.2.10])\r\n\tby mail.example.org (mailiverse); Sat, 21 Nov 2026\r\n"
MESSAGE = b"From: Bob <bob@remote.test>\r\nTo: alice@example.org\r\nSubject: hello\r\n\r\nHi Alice.\r\n"
REQUEST = JudgeRequest("192.0.2.10", "mx.remote.test", "bob@remote.test", "mail.example.org", ("example.org",))


def _signed() -> bytes:
    key = _SIGNER.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    signature: bytes = dkim.sign(MESSAGE, b"sel", b"remote.test", key, include_headers=[b"from", b"subject"])
    return RECEIVED + signature + MESSAGE


def _zone(dmarc: str = "v=DMARC1; p=reject") -> FakeZone:
    key = _SIGNER.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    return FakeZone(
        {
            ("remote.test", "TXT"): ("v=spf1 ip4:192.0.2.10 -all",),
            ("sel._domainkey.remote.test", "TXT"): ("v=DKIM1; p=" + base64.b64encode(key).decode(),),
            ("_dmarc.remote.test", "TXT"): (dmarc,),
        }
    )


def _job(keys: tuple[tuple[str, bytes], ...] = (("v2", PUBLIC_KEY),), judge: JudgeRequest | None = REQUEST) -> SealJob:
    return SealJob("Mail/In/1_2", "Mail/In_Json/1_2", 1, keys, Limits(), judge, "Mail/Spam/1_2")


def _opened(sink: MemorySink) -> list[bytes]:
    return [open_mail_object(PRIVATE_KEY, item.read()) for item in sink.objects]


def test_a_judged_message_is_stored_with_our_header_and_the_twin_with_its_results() -> None:
    """The original is our Authentication-Results header + the message as received; the twin is the twin of
    exactly that, with an ``authentication`` member: the verdict and each check's method, result, domain, selector."""
    raw = _signed()
    sink = MemorySink()
    meta = seal_message(raw, _job(), sink, Enquirer(_zone()))
    assert meta.judgement is not None and meta.judgement.verdict == "verified"
    header = results_header("mail.example.org", meta.judgement.results)
    original, twin_text = _opened(sink)
    assert original == header + raw
    twin = json.loads(twin_text)
    member = twin.pop("authentication")
    spam = twin.pop("spam")
    assert spam == {
        "spam": False,
        "checker": "built-in",
        "action": "no action",
        "score": 0,
        "threshold": 5,
        "symbols": [],
    }
    assert json.loads(convert(header + raw, original_path="Mail/In/1_2", written_ms=1)) == twin
    assert member["verdict"] == "verified" and "quarantined" not in member
    assert {"method": "dkim", "result": "pass", "domain": "remote.test", "selector": "sel"} in member["results"]
    assert {"method": "dmarc", "result": "pass", "domain": "remote.test", "selector": "", "policy": "reject"} in (
        member["results"]
    )


def test_a_forged_header_in_our_name_does_not_survive() -> None:
    """An incoming ``Authentication-Results: mail.example.org; dmarc=pass`` is gone from the stored original."""
    forged = b"Authentication-Results: mail.example.org; dmarc=pass header.from=bank.test\r\n"
    sink = MemorySink()
    seal_message(RECEIVED + forged + MESSAGE, _job(), sink, Enquirer(_zone()))
    original = _opened(sink)[0]
    assert forged not in original and original.endswith(RECEIVED + MESSAGE)
    assert original.count(b"Authentication-Results: mail.example.org;") == 1


def test_a_refused_message_is_never_sealed() -> None:
    """DMARC p=reject failing: no object is written, and the judgement says why."""
    sink = MemorySink()
    meta = seal_message(
        RECEIVED + MESSAGE,
        _job(judge=dataclasses.replace(REQUEST, client_ip="198.51.100.7")),
        sink,
        Enquirer(_zone()),
    )
    assert sink.objects == []
    assert meta.judgement is not None and (meta.judgement.action, meta.judgement.reason) == ("reject", "dmarc-reject")


def test_quarantined_mail_names_the_spam_folder_except_for_v1_accounts() -> None:
    """p=quarantine failing, for a v1 and a v2 recipient: the v2 twin points at Mail/Spam, the v1 twin keeps
    Mail/In; both twins say it is quarantined."""
    unsigned = RECEIVED + MESSAGE
    request = dataclasses.replace(REQUEST, client_ip="198.51.100.7")
    sink = MemorySink()
    meta = seal_message(
        unsigned,
        _job((("v1", PUBLIC_KEY), ("v2", PUBLIC_KEY)), request),
        sink,
        Enquirer(_zone("v=DMARC1; p=quarantine")),
    )
    assert meta.judgement is not None and meta.judgement.quarantined
    _, v1_twin_text, _, v2_twin_text = _opened(sink)
    v1_twin, v2_twin = json.loads(v1_twin_text), json.loads(v2_twin_text)
    assert (v1_twin["original"], v2_twin["original"]) == ("Mail/In/1_2", "Mail/Spam/1_2")
    assert v1_twin["authentication"]["quarantined"] is v2_twin["authentication"]["quarantined"] is True
    assert v1_twin["authentication"]["verdict"] == "failed"


def test_without_judging_nothing_changes() -> None:
    """A job without ``judge`` (a logged-in user's mail) is sealed exactly as before: no header, no member."""
    sink = MemorySink()
    meta = seal_message(RECEIVED + MESSAGE, _job(judge=None), sink)
    assert meta.judgement is None
    assert _opened(sink) == [RECEIVED + MESSAGE, convert(RECEIVED + MESSAGE, original_path="Mail/In/1_2", written_ms=1)]


def test_the_displayed_from_decides_what_verified_means() -> None:
    """A pass for remote.test is "verified" only if the twin shows remote.test; a displayed local From is refused."""
    verified = Judgement("verified", results=(AuthResult("dmarc", "pass", domain="remote.test"),))
    assert as_displayed(verified, ["remote.test"], REQUEST) == verified
    assert as_displayed(verified, ["bank.test"], REQUEST).verdict == "unverified"
    assert as_displayed(verified, ["remote.test", "bank.test"], REQUEST).verdict == "unverified"
    spoof = as_displayed(verified, ["example.org"], REQUEST)
    assert (spoof.action, spoof.reason) == ("reject", "local-domain")


def test_a_job_with_its_judge_request_crosses_the_pipe_unchanged() -> None:
    """SealJob.to_wire / from_wire keep the request, the trusted sealers and the spam path."""
    job = _job(judge=JudgeRequest("::1", "h.test", "", "mail.example.org", ("example.org",), ("lists.test",), False))
    assert SealJob.from_wire(json.loads(json.dumps(job.to_wire()))) == job


@pytest.mark.parametrize(
    "judgement",
    [
        {"verdict": "trusted", "action": "accept", "reason": "", "results": []},
        {"verdict": "failed", "action": "reject", "reason": "550 go away\r\n", "results": []},
        {"verdict": "failed", "action": "explode", "reason": "", "results": []},
        {"verdict": "failed", "action": "accept", "reason": "", "results": [{"method": "x", "result": "pass"}]},
        {"verdict": "failed", "action": "accept", "reason": "", "results": [{}] * 40},
        "verified",
    ],
)
def test_a_worker_cannot_make_up_words(judgement: Any) -> None:
    """Anything but the known verdicts, actions, reasons, methods and results is a protocol break."""
    with pytest.raises(ValueError):
        SealedMeta.from_wire({"size": 1, "judgement": judgement})


def test_names_a_worker_reports_are_kept_only_if_plain() -> None:
    """A domain or selector with anything but DNS characters is dropped on the way in."""
    meta = SealedMeta.from_wire(
        {
            "size": 1,
            "judgement": {
                "verdict": "verified",
                "action": "accept",
                "reason": "",
                "results": [{"method": "dkim", "result": "pass", "domain": "a.test\nforged", "selector": "s 1"}],
            },
        }
    )
    assert meta.judgement == Judgement("verified", results=(AuthResult("dkim", "pass"),))
