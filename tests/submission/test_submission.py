"""The submission service: how one user's message is routed, delivered, queued and filed,
whichever front end calls it."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
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
