"""The built-in spam check (GTUBE, DNS blocklists, failed authentication), how its report and the filter's
combine with the authenticity judgement, and the report as hostile worker or filter output."""

from __future__ import annotations

import math

import pytest

from mailiverse.delivery.dnschannel import Enquirer
from mailiverse.delivery.judge import judge
from mailiverse.delivery.policy import decisive_report, with_spam
from mailiverse.delivery.spamcheck import GTUBE, MAX_DNSBL_ZONES, builtin_report, listed, query_name
from mailiverse.delivery.verdicts import AuthResult, Judgement, JudgeRequest, SpamReport
from tests.support.fakedns import FakeZone

MESSAGE = b"From: Ann <ann@remote.test>\r\nTo: bob@example.org\r\nSubject: hi\r\n\r\nHello.\r\n"


def request(**changes: object) -> JudgeRequest:
    fields: dict[str, object] = {
        "client_ip": "192.0.2.10",
        "helo": "mx.remote.test",
        "mail_from": "ann@remote.test",
        "authserv_id": "mail.example.org",
        "local_domains": ("example.org",),
    }
    fields.update(changes)
    return JudgeRequest(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("address", "zone", "name"),
    [
        ("192.0.2.10", "bl.test", "10.2.0.192.bl.test"),
        ("2001:db8::1", "bl.test", "1.0.0.0." + "0.0.0.0." * 5 + "8.b.d.0.1.0.0.2.bl.test"),
        ("not an address", "bl.test", ""),
        ("192.0.2.10", "bad zone", ""),
    ],
)
def test_the_blocklist_question_reverses_the_address(address: str, zone: str, name: str) -> None:
    assert query_name(address, zone) == name


@pytest.mark.parametrize(
    ("answer", "is_listed"),
    [
        (("127.0.0.2",), True),
        (("127.0.0.10", "127.0.0.4"), True),
        (("127.255.255.254",), False),  # the list's own error code (e.g. "asked through a public resolver")
        (("192.0.2.1",), False),  # not in 127/8: not a listing
        ((), False),
    ],
)
def test_a_listing_is_an_answer_in_127_slash_8_but_not_a_lists_error_code(
    answer: tuple[str, ...], is_listed: bool
) -> None:
    zone = FakeZone({("10.2.0.192.bl.test", "A"): answer} if answer else {})
    assert listed("192.0.2.10", ("bl.test",), Enquirer(zone)) is is_listed


def test_a_blocklist_without_answer_is_no_listing_and_the_zones_asked_are_bounded() -> None:
    zones = tuple(f"bl{i}.test" for i in range(MAX_DNSBL_ZONES + 3))
    zone = FakeZone(failing=tuple(f"10.2.0.192.{z}" for z in zones))
    assert listed("192.0.2.10", zones, Enquirer(zone)) is False
    assert len(zone.asked) == MAX_DNSBL_ZONES


@pytest.mark.parametrize(
    ("results", "symbols", "action"),
    [
        ((), (), "no action"),
        ((AuthResult("spf", "fail"), AuthResult("dmarc", "fail")), ("SPF_FAIL", "DMARC_FAIL"), "no action"),
        (
            (AuthResult("spf", "fail"), AuthResult("dkim", "fail"), AuthResult("dmarc", "fail")),
            ("SPF_FAIL", "DKIM_FAIL", "DMARC_FAIL"),
            "add header",
        ),
        # One signature that passes: a broken second one is not held against the message.
        ((AuthResult("dkim", "pass"), AuthResult("dkim", "fail")), (), "no action"),
        ((AuthResult("spf", "softfail"), AuthResult("arc", "fail")), ("SPF_SOFTFAIL", "ARC_FAIL"), "no action"),
    ],
)
def test_failed_authentication_scores(results: tuple[AuthResult, ...], symbols: tuple[str, ...], action: str) -> None:
    report = builtin_report(results, request(), None)
    assert (report.symbols, report.action) == (symbols, action)


def test_a_trusted_arc_sealer_excuses_the_failures_forwarding_caused() -> None:
    results = (AuthResult("spf", "fail"), AuthResult("dkim", "fail"), AuthResult("dmarc", "fail"))
    sealed = (*results, AuthResult("arc", "pass", domain="lists.test"))
    assert builtin_report(sealed, request(trusted_arc_sealers=("lists.test",)), None).action == "no action"
    assert builtin_report(sealed, request(), None).action == "add header"


def test_a_listed_sender_is_spam_on_its_own() -> None:
    zone = FakeZone({("10.2.0.192.bl.test", "A"): ("127.0.0.2",)})
    report = builtin_report((), request(dnsbl_zones=("bl.test",)), Enquirer(zone))
    assert (report.action, report.symbols, report.score) == ("add header", ("DNSBL_LISTED",), 5.0)


def test_gtube_is_refused_before_any_dns_question() -> None:
    zone = FakeZone()
    judgement = judge(MESSAGE + b"Test: " + GTUBE + b"\r\n", request(), Enquirer(zone))
    assert (judgement.action, judgement.reason) == ("reject", "spam")
    assert judgement.spam is not None and judgement.spam.symbols == ("GTUBE",)
    assert zone.asked == []


def test_a_local_from_stays_refused_for_its_own_reason_even_with_gtube() -> None:
    spoof = MESSAGE.replace(b"ann@remote.test", b"alice@example.org") + GTUBE
    assert judge(spoof, request(), Enquirer(FakeZone())).reason == "local-domain"


@pytest.mark.parametrize(
    ("action", "outcome", "reason"),
    [
        ("no action", "accept", ""),
        ("add header", "quarantine", "spam-quarantine"),
        ("rewrite subject", "quarantine", "spam-quarantine"),
        ("greylist", "defer", "greylist"),
        ("soft reject", "defer", "spam-defer"),
        ("reject", "reject", "spam"),
    ],
)
def test_each_filter_action_and_what_the_appliance_does(action: str, outcome: str, reason: str) -> None:
    judged = with_spam(Judgement("verified"), SpamReport("rspamd", action, 1.0, 15.0))
    assert (judged.action, judged.reason, judged.verdict) == (outcome, reason, "verified")


def test_the_more_severe_report_decides_and_the_filters_wins_a_tie() -> None:
    builtin = SpamReport("built-in", "add header", 5.0, 5.0, ("DNSBL_LISTED",))
    quiet = SpamReport("rspamd", "no action", 1.0, 15.0)
    loud = SpamReport("rspamd", "rewrite subject", 9.0, 15.0)
    assert decisive_report(builtin, quiet) is builtin
    assert decisive_report(builtin, loud) is loud
    assert decisive_report(None, quiet) is quiet and decisive_report(builtin, None) is builtin


def test_a_dmarc_quarantine_keeps_its_reason_when_spam_agrees() -> None:
    quarantined = Judgement("failed", "quarantine", "dmarc-quarantine")
    judged = with_spam(quarantined, SpamReport("built-in", "add header", 6.0, 5.0))
    assert (judged.action, judged.reason, judged.spam is not None) == ("quarantine", "dmarc-quarantine", True)


@pytest.mark.parametrize(
    "wire",
    [
        None,
        [],
        {"checker": "me", "action": "no action"},
        {"checker": "rspamd", "action": "delete everything"},
        {"checker": "rspamd", "action": "reject", "score": "9"},
        {"checker": "rspamd", "action": "reject", "score": math.nan},
        {"checker": "rspamd", "action": "reject", "score": 1e300},
        {"checker": "rspamd", "action": "reject", "score": True},
    ],
)
def test_a_malformed_report_is_refused(wire: object) -> None:
    with pytest.raises(ValueError):
        SpamReport.from_wire(wire)


def test_a_reports_symbols_keep_only_rule_names() -> None:
    report = SpamReport.from_wire(
        {
            "checker": "rspamd",
            "action": "no action",
            "symbols": ["GOOD_NAME", "bad name", "EVIL\r\nX-Header: 1", "A" * 65, 7, *[f"R{i}" for i in range(100)]],
        }
    )
    assert report.symbols[0] == "GOOD_NAME" and len(report.symbols) == 48
    assert all(symbol.isupper() or symbol[1:].isdigit() for symbol in report.symbols)
