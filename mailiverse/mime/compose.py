"""Build an RFC 5322 message from structured fields, where no value can end a header line and start another.

The appliance composes what ``POST /api/send`` is given (``mailiverse/submission``), and the client composes
the same bytes on the device before it seals them end to end (``mailiverse/client/e2e.py``), so the rules live
here, below both.

Two independent checks (issue 16, finding 8). Each value is checked for line breaks and control
characters twice: as given, and as the email package decoded it (RFC 2047 encoded words included),
because ``=?utf-8?q?x=0D=0ABcc:...?=`` is a line break only after decoding. Then the written header
block is read back line by line: every line is a ``Name: value`` line of a field that was set, in
order, or a folded continuation. So a bug in the email package (CVE-2024-6923 on Python 3.11.7 and
others) cannot add a header, whatever the Python patch level.

A refusal is :class:`ComposeError` (a ``ValueError``) with a stable ``code``; the submission service turns it
into its own ``SubmissionError``, the client into a usage error.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mailiverse.contracts import InvalidAddress, normalise_address

if TYPE_CHECKING:
    from email.headerregistry import Address
    from email.message import EmailMessage

#: Longest header line RFC 5322 allows (without its CRLF).
MAX_HEADER_LINE = 998
#: Longest value written into one header field (100 recipients with names fit); the email package's header
#: parser is quadratic in the number of encoded words, so values stay short.
MAX_HEADER_VALUE_CHARS = 10_000
#: Longest subject accepted for a structured message (RFC 5322's line limit).
MAX_SUBJECT_LENGTH = 998
#: Control characters (all but TAB) and every character ``str.splitlines`` breaks a line at (VT, FF,
#: FS, GS, RS, NEL, LINE SEPARATOR, PARAGRAPH SEPARATOR, CR, LF).
FORBIDDEN_IN_HEADERS = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
_FORBIDDEN_BYTES = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_ENCODED_WORD = re.compile(r"=\?([^?\s]*)\?([qQbB])\?([^?\s]*)\?=")
_WRITTEN_FIELD = re.compile(rb"([\x21-\x39\x3b-\x7e]+):[\x20-\x7e\t]*")
_WRITTEN_CONTINUATION = re.compile(rb"[ \t]+[\x21-\x7e][\x20-\x7e\t]*")
# email.policy (with the header registry) is imported only when a message is composed, not at start-up:
# idle memory (issue 9).


class ComposeError(ValueError):
    """A message that cannot be built safely: ``code`` is ``invalid_message`` or ``invalid_address``,
    ``message`` is safe to show."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


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
    """``normalise_address`` with the composer's error: ``invalid_address``."""
    try:
        return normalise_address(text)
    except InvalidAddress as error:
        raise ComposeError("invalid_address", str(error)) from None


def check_text(what: str, value: str) -> str:
    """``value`` when it holds no line break or control character, also inside RFC 2047 encoded words;
    ComposeError naming ``what`` otherwise."""
    if len(value) > MAX_HEADER_VALUE_CHARS:
        raise ComposeError("invalid_message", f"the {what} is longer than {MAX_HEADER_VALUE_CHARS} characters")
    if not is_clean(value):
        raise ComposeError("invalid_message", f"the {what} may not contain line breaks or control characters")
    return value


def is_clean(value: str) -> bool:
    """Whether ``value`` and the text of every encoded word in it hold no line break or control character.

    Encoded words are decoded here in linear time, more eagerly than the email package does (anywhere in
    the value, malformed base64 leniently), so whatever the package would decode is looked at too.
    """
    if FORBIDDEN_IN_HEADERS.search(value):
        return False
    for charset, encoding, text in _ENCODED_WORD.findall(value):
        raw = _word_bytes(encoding.lower(), text)
        if _FORBIDDEN_BYTES.search(raw) or FORBIDDEN_IN_HEADERS.search(_word_text(charset, raw)):
            return False
    return True


def _word_bytes(encoding: str, text: str) -> bytes:
    data = text.encode("ascii", "replace")
    if encoding == "q":
        return binascii.a2b_qp(data, header=True)
    letters = re.sub(rb"[^A-Za-z0-9+/]", b"", data)
    letters = letters[: len(letters) - 1] if len(letters) % 4 == 1 else letters
    try:
        return base64.b64decode(letters + b"=" * (-len(letters) % 4))
    except binascii.Error:
        return data


def _word_text(charset: str, raw: bytes) -> str:
    try:
        return raw.decode(charset.partition("*")[0] or "ascii", "replace")
    except (LookupError, ValueError):  # a charset the codecs do not know: the email package keeps the bytes
        return raw.decode("latin-1")


def set_header(message: EmailMessage, name: str, value: str | Address, what: str) -> None:
    """Set ``name`` after checking ``value`` as given and as the email package decoded it."""
    check_text(what, str(value))
    try:
        message[name] = value
        decoded = str(message[name])
    except Exception:  # noqa: BLE001 - the email package refuses hostile values in many ways
        raise ComposeError("invalid_message", f"the {what} is not acceptable") from None
    check_text(what, decoded)


def serialized(message: EmailMessage) -> bytes:
    """The message's bytes, once its written header block holds exactly the fields that were set."""
    try:
        data = message.as_bytes()
    except Exception:  # noqa: BLE001 - one refusal for anything the generator cannot write
        raise ComposeError("invalid_message", "the message headers or body are not acceptable") from None
    check_serialized_head(data, list(message.keys()))
    return data


def _written_names(data: bytes) -> list[str] | None:
    """The lower-case field names of a written header block, or None when any line is not a proper one."""
    head, blank, _body = data.partition(b"\r\n\r\n")
    if not blank:
        return None
    names: list[str] = []
    for line in head.split(b"\r\n"):
        if len(line) > MAX_HEADER_LINE:
            return None
        if names and _WRITTEN_CONTINUATION.fullmatch(line):
            continue
        field = _WRITTEN_FIELD.fullmatch(line)
        if field is None:
            return None
        names.append(field.group(1).decode("ascii").lower())
    return names


def check_serialized_head(data: bytes, names: Sequence[str]) -> None:
    """Refuse ``data`` unless its header block is exactly the fields ``names``, in order, each a proper
    ``Name: value`` line (ASCII, no control character but TAB) with folded continuations only."""
    if _written_names(data) != [name.lower() for name in names]:
        raise ComposeError("invalid_message", "the message headers could not be written safely")


def compose(message: Composed, *, default_from: str, hostname: str, now_ms: int) -> bytes:
    """RFC 5322 bytes of a structured message (Bcc is never written into it).

    Every header value goes through ``set_header`` and the written header block through ``serialized``:
    no value, raw or decoded, can add a header line. ``hostname`` names the Message-ID's domain.
    """
    sender = checked_address(message.from_address or default_from)
    if len(message.subject) > MAX_SUBJECT_LENGTH:
        raise ComposeError("invalid_message", "the subject is too long")
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
        raise ComposeError("invalid_message", "the message body is not acceptable") from None
    return serialized(built)


__all__ = [
    "FORBIDDEN_IN_HEADERS",
    "MAX_HEADER_LINE",
    "MAX_HEADER_VALUE_CHARS",
    "MAX_SUBJECT_LENGTH",
    "ComposeError",
    "Composed",
    "check_serialized_head",
    "check_text",
    "checked_address",
    "compose",
    "is_clean",
    "serialized",
    "set_header",
]
