"""Header safety (issue 16, findings 8 and 9): a built message gets no header it was not asked for, whatever
this machine's Python does with encoded words, and a raw message is sent only with exactly one From
holding exactly one address, the sender's own."""

from __future__ import annotations

import base64
from email.parser import BytesParser
from email.policy import default

import pytest
import pytest_twisted

from mailiverse.mime import compose as composer
from mailiverse.submission import Composed, Submission, SubmissionError, compose, sender_of
from mailiverse.submission import headers as header_rules
from mailiverse.submission.headers import check_serialized_head
from mailiverse.testing import MemoryInbox, MemoryOutbound

DOMAIN = "example.org"
OWN = ("alice@example.org", "alice@mail.example.net")
#: The subject of finding 8, exactly as reported (CVE-2024-6923 turns it into a Bcc line on Python 3.11.7).
FINDING_SUBJECT = "=?utf-8?q?x=0D=0ABcc:=20evil@evil.com?="
#: Every character ``str.splitlines`` (and so Python's email package) treats as a line break.
LINE_BREAKS = ("\r", "\n", "\r\n", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029")


def _encoded(text: str, how: str = "q") -> str:
    raw = text.encode("utf-8")
    if how == "b":
        return f"=?utf-8?b?{base64.b64encode(raw).decode('ascii')}?="
    return "=?utf-8?q?" + "".join(f"={b:02X}" if b < 33 or b > 126 or b in b"=?_:" else chr(b) for b in raw) + "?="


#: Subjects that try to end the Subject line and start a Bcc line: raw breaks, then encoded ones.
HOSTILE_SUBJECTS = [
    FINDING_SUBJECT,
    "x " * 40 + FINDING_SUBJECT,
    _encoded("x\r\nBcc: evil@evil.com", "b"),
    *(f"x{brk}Bcc: evil@evil.com" for brk in LINE_BREAKS),
    *(_encoded(f"x{brk}Bcc: evil@evil.com") for brk in LINE_BREAKS),
    "x\x00Bcc: evil@evil.com",
]


def _built(subject: str) -> bytes:
    return compose(
        Composed(to=("bob@example.org",), subject=subject, text="hi\n"),
        default_from="alice@example.org",
        hostname="mail.example.org",
        now_ms=1_700_000_000_000,
    )


def _header_names(message: bytes) -> list[str]:
    parsed = BytesParser(policy=default).parsebytes(message, headersonly=True)
    assert not parsed.defects
    return [name.lower() for name in parsed.keys()]


@pytest.mark.parametrize("subject", HOSTILE_SUBJECTS)
def test_a_subject_with_a_line_break_is_refused(subject: str) -> None:
    """A subject holding a line break, raw or in an RFC 2047 encoded word, is refused with invalid_message."""
    with pytest.raises(SubmissionError) as refused:
        _built(subject)
    assert (refused.value.code, refused.value.status) == ("invalid_message", 400)
    assert "subject" in refused.value.message


@pytest.mark.parametrize(
    "subject", ["hello", "Grüße aus Köln", "=?utf-8?q?caf=C3=A9?=", "tab\there", "x" * 300, "a: b <c@d> ;,"]
)
def test_ordinary_subjects_build_exactly_the_expected_headers(subject: str) -> None:
    """Ordinary subjects (long, non-ASCII, with an encoded word) build a message with exactly its own headers."""
    names = _header_names(_built(subject))
    assert sorted(names) == sorted(
        ["from", "to", "subject", "date", "message-id", "content-type", "content-transfer-encoding", "mime-version"]
    )


def test_the_serialized_head_check_alone_stops_the_library_bug(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the value checks switched off, the check of the written header block still keeps the Bcc line out."""
    monkeypatch.setattr(composer, "check_text", lambda what, value: value)  # the rules live in mime/compose.py
    try:
        built = _built(FINDING_SUBJECT)
    except SubmissionError as refused:
        assert (refused.code, refused.message) == ("invalid_message", "the message headers could not be written safely")
    else:  # a Python with the CVE-2024-6923 fix encodes the break instead
        assert "bcc" not in _header_names(built) and b"\r\nBcc:" not in built


@pytest.mark.parametrize(
    "head",
    [
        b"From: a@example.org\r\nSubject: x\r\nBcc: evil@evil.com\r\nMIME-Version: 1.0\r\n\r\nhi\r\n",
        b"From: a@example.org\r\nSubject: x\nBcc: evil@evil.com\r\nMIME-Version: 1.0\r\n\r\nhi\r\n",
        b"From: a@example.org\r\nSubject: x\rBcc: evil@evil.com\r\nMIME-Version: 1.0\r\n\r\nhi\r\n",
        b"From: a@example.org\r\nSubject: x\r\nnot a header line\r\nMIME-Version: 1.0\r\n\r\nhi\r\n",
        b"From: a@example.org\r\nSubject: x\r\n \r\nMIME-Version: 1.0\r\n\r\nhi\r\n",
        b"From: a@example.org\r\nSubject : x\r\nMIME-Version: 1.0\r\n\r\nhi\r\n",
        b"From: a@example.org\r\nSubject: x\xe2\x80\xa8y\r\nMIME-Version: 1.0\r\n\r\nhi\r\n",
        b"From: a@example.org\r\nSubject: x\x00\r\nMIME-Version: 1.0\r\n\r\nhi\r\n",
        b"From: a@example.org\r\nMIME-Version: 1.0\r\n\r\nhi\r\n",
        b"From: a@example.org\r\nSubject: x\r\nMIME-Version: 1.0\r\n",
        b" x\r\nFrom: a@example.org\r\nSubject: x\r\nMIME-Version: 1.0\r\n\r\nhi\r\n",
    ],
)
def test_a_written_head_with_anything_unexpected_is_refused(head: bytes) -> None:
    """Every line of the written head is a ``Name: value`` line it was asked for or a folded continuation."""
    with pytest.raises(SubmissionError) as refused:
        check_serialized_head(head, ["From", "Subject", "MIME-Version"])
    assert refused.value.code == "invalid_message"


def test_header_values_are_bounded() -> None:
    """A header value longer than MAX_HEADER_VALUE_CHARS is refused before the email package parses it."""
    many_words = "=?utf-8?q?a?= " * (header_rules.MAX_HEADER_VALUE_CHARS // 14 + 1)
    with pytest.raises(SubmissionError) as refused:
        header_rules.check_text("subject", many_words)
    assert refused.value.code == "invalid_message" and "longer" in refused.value.message


def test_a_proper_written_head_passes() -> None:
    """A head of exactly the expected fields, one of them folded, passes the check."""
    check_serialized_head(
        b"From: a@example.org\r\nSubject: a long\r\n subject\r\nMIME-Version: 1.0\r\n\r\nhi\r\n",
        ["From", "Subject", "MIME-Version"],
    )


def _raw(head: str) -> bytes:
    return (head + "\r\nTo: bob@example.org\r\nSubject: s\r\n\r\nbody\r\n").encode("utf-8")


#: Raw messages that must not be sent, with the code of the refusal.
TWO_FROMS = [
    ("From: alice@example.org\r\nFrom\t: ceo@example.org", "invalid_message"),
    ("From: alice@example.org\r\nFrom : ceo@example.org", "invalid_message"),
    ("From\t: ceo@example.org\r\nFrom: alice@example.org", "invalid_message"),
    ("From : alice@example.org", "invalid_message"),
    ("From: alice@example.org\r\nFROM: alice@example.org", "invalid_message"),
    ("From: alice@example.org\r\nX-Note: a\r\nfrom: ceo@example.org", "invalid_message"),
    ("From: alice@example.org, ceo@example.org", "invalid_message"),
    ("From: alice@example.org,ceo@example.org", "invalid_message"),
    ("From: alice@example.org,\r\n ceo@example.org", "invalid_message"),
    ("From: Alice <alice@example.org>, Alice <alice@mail.example.net>", "invalid_message"),
    ("From: team: alice@example.org;", "invalid_message"),
    ("From: team: alice@example.org, ceo@example.org;", "invalid_message"),
    ("From: undisclosed-recipients:;", "invalid_message"),
    ("From: alice@example.org <ceo@example.org>", "invalid_message"),
    ("From: ceo@example.org <alice@example.org>", "invalid_message"),
    ("From: <alice@example.org> <ceo@example.org>", "invalid_message"),
    ("From: alice@example.org ceo@example.org", "invalid_message"),
    ("From: " + _encoded("x\r\nFrom: ceo@example.org") + " <alice@example.org>", "invalid_message"),
    ("From: " + _encoded("x\u2028From: ceo@example.org") + " <alice@example.org>", "invalid_message"),
    ("From: alice@example.org\u2028", "invalid_message"),
    ("From: ", "invalid_message"),
    ("From alice@example.org Mon Jan  1 00:00:00 2024\r\nFrom: alice@example.org", "invalid_message"),
    ("From: alice@example.org\r\nnot a header line\r\nFrom: ceo@example.org", "invalid_message"),
    (" folded first\r\nFrom: alice@example.org", "invalid_message"),
    ("From: alice@example.org\r\nIn-Reply-To: <a\x0b@b>", "invalid_message"),
    ("From: alice@example.org\r\nReferences: <a@b>\u2028Bcc: evil@evil.com", "invalid_message"),
    ("From: alice@example.org\r\nReferences: <a@b>\x85Bcc: evil@evil.com", "invalid_message"),
    ("From: alice@example.org\r\nX-Subject: " + FINDING_SUBJECT, "invalid_message"),
    ("From: alice@example.org\r\nX-Note: =?utf-8?b?eA0KQmNj!!OiBldmlsQGV2aWwuY29t?=", "invalid_message"),
    ("From: alice@example.org\r\nX-Note: =?iso-8859-1?q?x=85Bcc:=20evil@evil.com?=", "invalid_message"),
    ("From: alice@example.org\r\nIn-Reply-To: " + _encoded("<a@b>\r\nBcc: evil@evil.com"), "invalid_message"),
    ("From: ceo@example.org", "sender_not_allowed"),
    ("From: Alice <alice@example.org.evil.test>", "sender_not_allowed"),
    ("From: alice@example.org\r\nSender: ceo@example.org", "sender_not_allowed"),
    ("From: alice@example.org\r\nSender: alice@example.org\r\nSender: ceo@example.org", "invalid_message"),
    ("From: alice@example.org\r\nSender: alice@example.org, ceo@example.org", "invalid_message"),
    ("From: alice@example.org\r\nSender\t: ceo@example.org", "invalid_message"),
]


@pytest.mark.parametrize(("head", "code"), TWO_FROMS)
def test_a_raw_message_needs_exactly_one_own_from(head: str, code: str) -> None:
    """Anything but one From header field holding one address of the sender's own is refused."""
    with pytest.raises(SubmissionError) as refused:
        sender_of(_raw(head), OWN)
    assert refused.value.code == code


@pytest.mark.parametrize(
    ("head", "sender"),
    [
        ("From: alice@example.org", "alice@example.org"),
        ("From: Alice <ALICE@Example.ORG>", "alice@example.org"),
        ("From: Alice\r\n <alice@mail.example.net>", "alice@mail.example.net"),
        ("From: =?utf-8?q?Al=C3=AFce_=28me=29?= <alice@example.org>", "alice@example.org"),
        ('From: "Alice, at home" <alice@example.org>', "alice@example.org"),
        ("From: alice@example.org (Alice)", "alice@example.org"),
        ("From: alice@example.org\r\nSender: Alice <alice@mail.example.net>", "alice@example.org"),
    ],
)
def test_one_own_from_is_accepted(head: str, sender: str) -> None:
    """One From with one own address (any display name, folded, encoded, any case) is the sender."""
    found, listed = sender_of(_raw(head), OWN)
    assert (found, listed) == (sender, ["bob@example.org"])


@pytest.mark.parametrize(("head", "code"), TWO_FROMS[:4])
@pytest_twisted.ensureDeferred
async def test_two_froms_deliver_and_queue_nothing(head: str, code: str) -> None:
    """A raw message with a second From, however spelt, is refused before anything is delivered or queued."""
    inbox = MemoryInbox(users={"alice": "alice", "bob": "bob"}, domains=(DOMAIN,))
    outbound = MemoryOutbound()
    submission = Submission(inbox, (DOMAIN,), outbound=outbound)
    message = _raw(head).replace(b"To: bob@example.org", b"To: bob@example.org, carol@remote.test")
    with pytest.raises(SubmissionError) as refused:
        await submission.submit(submission.submitter("alice"), message)
    assert refused.value.code == code
    assert inbox.delivered == [] and outbound.submitted == []


@pytest_twisted.ensureDeferred
async def test_a_front_end_passing_its_sender_still_gets_the_one_from_rule() -> None:
    """A front end that passes its own envelope sender cannot hand on a message with a second From."""
    inbox = MemoryInbox(users={"alice": "alice", "bob": "bob"}, domains=(DOMAIN,))
    submission = Submission(inbox, (DOMAIN,))
    message = _raw("From: alice@example.org\r\nFrom\t: ceo@example.org")
    with pytest.raises(SubmissionError) as refused:
        await submission.submit(
            submission.submitter("alice"), message, ["bob@example.org"], mail_from="alice@example.org", sent_copy=False
        )
    assert refused.value.code == "invalid_message" and inbox.delivered == []
