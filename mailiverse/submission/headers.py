"""Header fields of the messages the appliance builds: no value can end a header line and start another.

Two independent checks (issue 16, finding 8). Each value is checked for line breaks and control
characters twice: as given, and as the email package decoded it (RFC 2047 encoded words included),
because ``=?utf-8?q?x=0D=0ABcc:...?=`` is a line break only after decoding. Then the written header
block is read back line by line: every line is a ``Name: value`` line of a field that was set, in
order, or a folded continuation. So a bug in the email package (CVE-2024-6923 on Python 3.11.7 and
others) cannot add a header, whatever the Python patch level.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from mailiverse.submission.errors import SubmissionError

if TYPE_CHECKING:
    from email.headerregistry import Address
    from email.message import EmailMessage

#: Longest header line RFC 5322 allows (without its CRLF).
MAX_HEADER_LINE = 998
#: Longest value the appliance writes into one header field (100 recipients with names fit); the email
#: package's header parser is quadratic in the number of encoded words, so values stay short.
MAX_HEADER_VALUE_CHARS = 10_000
#: Control characters (all but TAB) and every character ``str.splitlines`` breaks a line at (VT, FF,
#: FS, GS, RS, NEL, LINE SEPARATOR, PARAGRAPH SEPARATOR, CR, LF).
FORBIDDEN_IN_HEADERS = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
_FORBIDDEN_BYTES = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_ENCODED_WORD = re.compile(r"=\?([^?\s]*)\?([qQbB])\?([^?\s]*)\?=")
_WRITTEN_FIELD = re.compile(rb"([\x21-\x39\x3b-\x7e]+):[\x20-\x7e\t]*")
_WRITTEN_CONTINUATION = re.compile(rb"[ \t]+[\x21-\x7e][\x20-\x7e\t]*")


def check_text(what: str, value: str) -> str:
    """``value`` when it holds no line break or control character, also inside RFC 2047 encoded words;
    SubmissionError naming ``what`` otherwise."""
    if len(value) > MAX_HEADER_VALUE_CHARS:
        raise SubmissionError("invalid_message", f"the {what} is longer than {MAX_HEADER_VALUE_CHARS} characters")
    if not is_clean(value):
        raise SubmissionError("invalid_message", f"the {what} may not contain line breaks or control characters")
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
        raise SubmissionError("invalid_message", f"the {what} is not acceptable") from None
    check_text(what, decoded)


def serialized(message: EmailMessage) -> bytes:
    """The message's bytes, once its written header block holds exactly the fields that were set."""
    try:
        data = message.as_bytes()
    except Exception:  # noqa: BLE001 - one refusal for anything the generator cannot write
        raise SubmissionError("invalid_message", "the message headers or body are not acceptable") from None
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
        raise SubmissionError("invalid_message", "the message headers could not be written safely")


__all__ = [
    "FORBIDDEN_IN_HEADERS",
    "MAX_HEADER_LINE",
    "MAX_HEADER_VALUE_CHARS",
    "check_serialized_head",
    "check_text",
    "is_clean",
    "serialized",
    "set_header",
]
