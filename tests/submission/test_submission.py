"""The submission service: how one user's message is routed, delivered, queued and filed,
whichever front end calls it."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from twisted.internet.task import Clock
from twisted.logger import formatEvent, globalLogPublisher

from mailiverse.contracts import INBOX_FOLDER, SENT_FOLDER
from mailiverse.submission import Submission, SubmissionError
from mailiverse.testing import MemoryInbox, MemoryOutbound

DOMAIN = "example.org"


def _world(*, outbound: MemoryOutbound | None = None, fail: bool = False) -> tuple[Submission, MemoryInbox]:
    inbox = MemoryInbox(users={"alice": "alice", "bob": "bob"}, domains=(DOMAIN,), fail=fail)
    return Submission(inbox, (DOMAIN,), outbound=outbound, max_message_size=4096), inbox


def _message(to: str = "bob@example.org", sender: str = "alice@example.org") -> bytes:
    return f"From: {sender}\r\nTo: {to}\r\nSubject: hi\r\n\r\nhello\r\n".encode()


@pytest_twisted.ensureDeferred
async def test_local_mail_is_delivered_and_the_sent_copy_filed() -> None:
    """A local recipient gets the message in the inbox; the sender's copy goes to Mail/Sent through the same IInbox."""
    submission, inbox = _world()
    result = await submission.submit(submission.submitter("alice"), _message())
    assert (result.local, result.remote, result.queue_id) == (("bob@example.org",), (), None)
    assert [(d.folder, [r.user for r in d.recipients]) for d in inbox.delivered] == [
        (INBOX_FOLDER, ["bob"]),
        (SENT_FOLDER, ["alice"]),
    ]
    assert result.sent_path is not None and result.sent_path.startswith(SENT_FOLDER + "/")
    assert all(d.data == _message() for d in inbox.delivered)


@pytest_twisted.ensureDeferred
async def test_remote_mail_is_queued_with_the_checked_envelope_sender() -> None:
    """A remote recipient goes to IOutbound with the user's address as the envelope sender."""
    outbound = MemoryOutbound()
    submission, inbox = _world(outbound=outbound)
    result = await submission.submit(submission.submitter("alice"), _message("carol@remote.test"))
    assert result.queue_id == "q1" and result.remote == ("carol@remote.test",)
    assert [(s.user, s.mail_from, s.recipients) for s in outbound.submitted] == [
        ("alice", "alice@example.org", ("carol@remote.test",))
    ]
    assert [d.folder for d in inbox.delivered] == [SENT_FOLDER]


@pytest.mark.parametrize(
    ("message", "recipients", "code", "status"),
    [
        (b"", None, "message_too_large", 413),
        (b"x" * 5000, None, "message_too_large", 413),
        (_message(sender="mallory@example.org"), None, "sender_not_allowed", 403),
        (b"To: bob@example.org\r\n\r\nno From\r\n", None, "invalid_message", 400),
        (_message("nobody@example.org"), None, "unknown_recipient", 400),
        (_message("bob@example.org, carol@remote.test"), None, "remote_delivery_disabled", 422),
        (_message(), ["not an address"], "invalid_address", 400),
        (_message(), [], "invalid_recipients", 400),
    ],
)
@pytest_twisted.ensureDeferred
async def test_refusals_deliver_and_queue_nothing(
    message: bytes, recipients: list[str] | None, code: str, status: int
) -> None:
    """Every refusal carries a stable code and status, and nothing is delivered, queued or filed."""
    submission, inbox = _world()
    with pytest.raises(SubmissionError) as refused:
        await submission.submit(submission.submitter("alice"), message, recipients)
    assert (refused.value.code, refused.value.status) == (code, status)
    assert inbox.delivered == []


@pytest_twisted.ensureDeferred
async def test_too_many_recipients_is_refused_before_routing() -> None:
    """More than 100 distinct recipients is refused, and no address is even looked up."""
    submission, inbox = _world()
    many = [f"u{i}@example.org" for i in range(101)]
    with pytest.raises(SubmissionError) as refused:
        await submission.submit(submission.submitter("alice"), _message(), many)
    assert refused.value.code == "invalid_recipients"
    assert inbox.resolved == []


@pytest_twisted.ensureDeferred
async def test_failures_below_are_retryable_and_logged_without_their_message() -> None:
    """A failing inbox or queue becomes a 503 the client may retry; the log has the type, never the text."""
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        submission, _inbox = _world(fail=True)
        with pytest.raises(SubmissionError) as local:
            await submission.submit(submission.submitter("alice"), _message())
        broken = MemoryOutbound(fail=True)
        submission, _inbox = _world(outbound=broken)
        with pytest.raises(SubmissionError) as remote:
            await submission.submit(submission.submitter("alice"), _message("carol@remote.test"))
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert (local.value.code, local.value.status) == ("delivery_failed", 503)
    assert (remote.value.code, remote.value.status) == ("outbound_failed", 503)
    logged = [formatEvent(e) for e in events]
    assert any("DeliveryFailed" in t for t in logged) and any("RuntimeError" in t for t in logged)
    assert not any("MemoryInbox(fail=True)" in t or "queue is unavailable" in t for t in logged)


@pytest_twisted.ensureDeferred
async def test_a_front_end_that_checked_the_sender_passes_it_and_keeps_no_copy() -> None:
    """The legacy relay passes its own checked envelope sender and asks for no Sent copy."""
    submission, inbox = _world()
    result = await submission.submit(
        submission.submitter("alice"),
        _message(sender="Alice <alice@example.org>"),
        ["bob@example.org"],
        mail_from="alice@example.org",
        sent_copy=False,
    )
    assert result.sent_path is None and [d.folder for d in inbox.delivered] == [INBOX_FOLDER]


def _limited(per_hour: int, clock: Clock) -> tuple[Submission, MemoryInbox, MemoryOutbound]:
    inbox = MemoryInbox(users={"alice": "alice", "bob": "bob"}, domains=(DOMAIN,))
    outbound = MemoryOutbound()
    submission = Submission(
        inbox, (DOMAIN,), outbound=outbound, max_message_size=4096, send_limit_per_hour=per_hour, clock=clock
    )
    return submission, inbox, outbound


@pytest_twisted.ensureDeferred
async def test_the_hourly_send_limit_counts_recipients_per_account() -> None:
    """Each recipient spends one of the account's hourly budget, whichever front end sends; past it,
    429 rate_limited with a retry time, and nothing is delivered, queued or filed."""
    clock = Clock()
    submission, inbox, outbound = _limited(3, clock)
    two = _message("bob@example.org, carol@remote.test")
    await submission.submit(submission.submitter("alice"), two)
    # The legacy relay's submitter (no account object, no Sent copy) shares the same budget.
    await submission.submit(
        submission.submitter("alice"), _message(), ["bob@example.org"], mail_from="alice@example.org", sent_copy=False
    )
    delivered, queued = len(inbox.delivered), len(outbound.submitted)
    with pytest.raises(SubmissionError) as refused:
        await submission.submit(submission.submitter("alice", object()), _message())
    assert (refused.value.code, refused.value.status, refused.value.retry_after) == ("rate_limited", 429, 1200)
    assert (len(inbox.delivered), len(outbound.submitted)) == (delivered, queued)
    await submission.submit(submission.submitter("bob"), _message("alice@example.org", sender="bob@example.org"))
    clock.advance(1200)
    await submission.submit(submission.submitter("alice"), _message())
    with pytest.raises(SubmissionError):
        await submission.submit(submission.submitter("alice"), _message())


@pytest_twisted.ensureDeferred
async def test_a_refused_submission_gives_its_recipients_back() -> None:
    """A submission refused before anything was sent (unknown recipient, failing inbox) costs no budget;
    a message with more recipients than the hourly limit is refused outright."""
    clock = Clock()
    submission, inbox, _outbound = _limited(2, clock)
    for _ in range(3):
        with pytest.raises(SubmissionError) as unknown:
            await submission.submit(submission.submitter("alice"), _message("nobody@example.org, bob@example.org"))
        assert unknown.value.code == "unknown_recipient"
    inbox.fail = True
    with pytest.raises(SubmissionError):
        await submission.submit(submission.submitter("alice"), _message("bob@example.org, carol@remote.test"))
    inbox.fail = False
    await submission.submit(submission.submitter("alice"), _message("bob@example.org, carol@remote.test"))
    with pytest.raises(SubmissionError) as too_many:
        await submission.submit(
            submission.submitter("bob"), _message("a@example.org, b@x.test, c@y.test", sender="bob@example.org")
        )
    assert (too_many.value.code, too_many.value.status) == ("invalid_recipients", 400)


@pytest_twisted.ensureDeferred
async def test_full_mailboxes_refuse_the_whole_message() -> None:
    """A full local recipient, or a full sender who keeps a Sent copy, is a 507 before anything is sent."""
    outbound = MemoryOutbound()
    inbox = MemoryInbox(users={"alice": "alice", "bob": "bob"}, domains=(DOMAIN,), full={"bob"})
    submission = Submission(inbox, (DOMAIN,), outbound=outbound, max_message_size=4096)
    with pytest.raises(SubmissionError) as recipient:
        await submission.submit(submission.submitter("alice"), _message("carol@remote.test, bob@example.org"))
    assert (recipient.value.code, recipient.value.status) == ("recipient_over_quota", 507)
    inbox.full = {"alice"}
    with pytest.raises(SubmissionError) as sender:
        await submission.submit(submission.submitter("alice"), _message("carol@remote.test, bob@example.org"))
    assert (sender.value.code, sender.value.status) == ("over_quota", 507)
    assert (inbox.delivered, outbound.submitted) == ([], [])
    # Without a Sent copy (the legacy relay) the sender's own mailbox takes nothing, so it may be full.
    await submission.submit(
        submission.submitter("alice"), _message(), ["bob@example.org"], mail_from="alice@example.org", sent_copy=False
    )
    assert [d.folder for d in inbox.delivered] == [INBOX_FOLDER]
