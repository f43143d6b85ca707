"""Build a message from the API's structured fields (who a raw message is from: ``sender.py``)."""

from __future__ import annotations

import email.utils
from dataclasses import dataclass

from mailiverse.contracts import InvalidAddress, normalise_address
from mailiverse.submission.errors import SubmissionError
from mailiverse.submission.headers import serialized, set_header

#: Longest subject accepted for a structured message (RFC 5322's line limit).
MAX_SUBJECT_LENGTH = 998
# email.policy (with the header registry) is imported only when a message is composed or read, not at
# start-up: idle memory (issue 9).


@dataclass(frozen=True)
class Composed:
    """A structured message as the API accepts it."""

    to: tuple[str, ...]
    cc: tuple[str, ...] = ()
    bcc: tuple[str, ...] = ()
    subject: str = ""
    text: str = ""
    from_address: str | None = None


def checked_address(text: object) -> str:
    """``normalise_address`` with the submission's error: ``invalid_address``."""
    try:
        return normalise_address(text)
    except InvalidAddress as error:
        raise SubmissionError("invalid_address", str(error)) from None


def compose(message: Composed, *, default_from: str, hostname: str, now_ms: int) -> bytes:
    """RFC 5322 bytes of a structured message (Bcc is never written into it).

    Every header value goes through ``set_header`` and the written header block through ``serialized``
    (mailiverse/submission/headers.py): no value, raw or decoded, can add a header line.
    """
    sender = checked_address(message.from_address or default_from)
    if len(message.subject) > MAX_SUBJECT_LENGTH:
        raise SubmissionError("invalid_message", "the subject is too long")
    from email.message import EmailMessage
    from email.policy import SMTP

    built = EmailMessage(policy=SMTP)
    set_header(built, "From", sender, "From address")
    if message.to:
        set_header(built, "To", ", ".join(checked_address(a) for a in message.to), "To addresses")
    if message.cc:
        set_header(built, "Cc", ", ".join(checked_address(a) for a in message.cc), "Cc addresses")
    set_header(built, "Subject", message.subject, "subject")
    set_header(built, "Date", email.utils.formatdate(now_ms / 1000, usegmt=True), "Date")
    set_header(built, "Message-ID", email.utils.make_msgid(domain=hostname), "Message-ID")
    try:
        built.set_content(message.text)
    except (ValueError, TypeError):
        raise SubmissionError("invalid_message", "the message body is not acceptable") from None
    return serialized(built)


__all__ = ["MAX_SUBJECT_LENGTH", "Composed", "checked_address", "compose"]
