"""Build a message from the API's structured fields, and read who a raw message says it is from."""

from __future__ import annotations

import email.utils
from collections.abc import Sequence
from dataclasses import dataclass
from email.parser import BytesHeaderParser

from mailiverse.contracts import InvalidAddress, normalise_address
from mailiverse.submission.errors import SubmissionError

#: Longest subject accepted for a structured message (RFC 5322's line limit).
MAX_SUBJECT_LENGTH = 998
# compat32 is the parser's default policy; email.policy (with the header registry) is imported only when
# a message is composed, not at start-up: idle memory (issue 9).
_HEADER_PARSER = BytesHeaderParser()


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
    """RFC 5322 bytes of a structured message (Bcc is never written into it)."""
    sender = checked_address(message.from_address or default_from)
    if len(message.subject) > MAX_SUBJECT_LENGTH:
        raise SubmissionError("invalid_message", "the subject is too long")
    from email.message import EmailMessage
    from email.policy import SMTP

    built = EmailMessage(policy=SMTP)
    try:
        built["From"] = sender
        if message.to:
            built["To"] = ", ".join(checked_address(a) for a in message.to)
        if message.cc:
            built["Cc"] = ", ".join(checked_address(a) for a in message.cc)
        built["Subject"] = message.subject
        built["Date"] = email.utils.formatdate(now_ms / 1000, usegmt=True)
        built["Message-ID"] = email.utils.make_msgid(domain=hostname)
        built.set_content(message.text)
        return built.as_bytes()
    except (ValueError, TypeError):
        raise SubmissionError("invalid_message", "the message headers or body are not acceptable") from None


def _header_addresses(values: Sequence[str]) -> list[str]:
    return [address for _name, address in email.utils.getaddresses(list(values)) if address]


def sender_of(message: bytes, own_addresses: Sequence[str]) -> tuple[str, list[str]]:
    """The message's one From address (which must be one of ``own_addresses``) and the To, Cc and Bcc addresses."""
    headers = _HEADER_PARSER.parsebytes(message)
    froms = headers.get_all("From") or []
    found = _header_addresses([str(v) for v in froms])
    if len(froms) != 1 or len(found) != 1:
        raise SubmissionError("invalid_message", "the message needs exactly one From address")
    sender = checked_address(found[0])
    if sender.lower() not in {a.lower() for a in own_addresses}:
        raise SubmissionError("sender_not_allowed", "the From address is not one of your addresses", 403)
    listed = _header_addresses([str(v) for key in ("To", "Cc", "Bcc") for v in headers.get_all(key) or []])
    return sender, listed


__all__ = ["MAX_SUBJECT_LENGTH", "Composed", "checked_address", "compose", "sender_of"]
