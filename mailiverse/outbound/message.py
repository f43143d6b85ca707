"""Checking outbound addresses and making a submitted message ready to leave: line endings, Bcc, Date, Message-ID."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from email.utils import format_datetime

from mailiverse.contracts import InvalidDomain, normalise_domain
from mailiverse.outbound.errors import SubmissionRejected

MAX_ADDRESS_CHARS = 254
MAX_LOCAL_PART_CHARS = 64
#: Header fields that must never leave the machine.
STRIPPED_HEADERS = (b"bcc", b"resent-bcc")
_LOCAL_PART = re.compile(rb"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+$")
_LINE_BREAKS = re.compile(rb"\r\n|\r|\n")
# A field name followed directly by its colon: with a space or TAB before the colon, parsers disagree
# whether the line is a field at all (``From\t:`` is one for DKIM, the end of the header for others).
_FIELD_NAME = re.compile(rb"[\x21-\x39\x3b-\x7e]+:")


def normalize_address(address: str, *, what: str = "recipient") -> tuple[str, str]:
    """``(address, domain)`` with the domain in lower-case A-label form; raises ``SubmissionRejected``.

    Only plain ASCII ``local@domain`` addresses are accepted (no SMTPUTF8, no quoted local parts,
    no address literals), which is what every MTA on the way will take.
    """
    if not isinstance(address, str):
        raise SubmissionRejected(f"the {what} address is not text", code=f"invalid_{what}")
    text = address.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    local, at, domain = text.rpartition("@")
    raw_local = local.encode("utf-8", "replace")
    if (
        not at
        or not local
        or len(text) > MAX_ADDRESS_CHARS
        or len(raw_local) > MAX_LOCAL_PART_CHARS
        or not _LOCAL_PART.match(raw_local)
        or local.startswith(".")
        or local.endswith(".")
        or ".." in local
    ):
        raise SubmissionRejected(f"{what} address is not a valid address", code=f"invalid_{what}")
    try:
        ascii_domain = normalise_domain(domain)
    except InvalidDomain:
        raise SubmissionRejected(f"{what} address has an invalid domain", code=f"invalid_{what}") from None
    if "." not in ascii_domain:
        raise SubmissionRejected(f"{what} address has no fully qualified domain", code=f"invalid_{what}")
    return f"{local}@{ascii_domain}", ascii_domain


def _split(message: bytes) -> tuple[list[bytes], bytes]:
    lines = _LINE_BREAKS.split(message)
    for index, line in enumerate(lines):
        if line == b"":
            return lines[:index], b"\r\n".join(lines[index + 1 :])
    return lines, b""


def _header_fields(lines: list[bytes]) -> list[list[bytes]]:
    fields: list[list[bytes]] = []
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            if not fields:
                raise SubmissionRejected("the message starts with a continuation line", code="invalid_message")
            fields[-1].append(line)
        elif _FIELD_NAME.match(line):
            fields.append([line])
        else:
            raise SubmissionRejected("the message's header section is malformed", code="invalid_message")
    return fields


def _name(field: list[bytes]) -> bytes:
    return field[0].split(b":", 1)[0].strip().lower()


def prepare_message(message: bytes, *, sender_domain: str, now: datetime | None = None) -> bytes:
    """The message with CRLF line endings, Bcc removed, and Date / Message-ID added when missing."""
    lines, body = _split(message)
    fields = _header_fields(lines)
    names = [_name(f) for f in fields]
    if names.count(b"from") != 1:
        raise SubmissionRejected("the message must have exactly one From header field", code="invalid_message")
    kept = [f for f in fields if _name(f) not in STRIPPED_HEADERS]
    if b"date" not in names:
        stamp = format_datetime(now or datetime.now(UTC))
        kept.append([b"Date: " + stamp.encode("ascii")])
    if b"message-id" not in names:
        kept.append([b"Message-ID: <%s@%s>" % (secrets.token_hex(16).encode("ascii"), sender_domain.encode("ascii"))])
    head = b"\r\n".join(line for field in kept for line in field)
    if body and not body.endswith(b"\r\n"):
        body += b"\r\n"
    return head + b"\r\n\r\n" + body


def smtp_data(message: bytes) -> bytes:
    """The DATA payload: CRLF line endings, dot-stuffed, ending in CRLF (the final "." is the client's)."""
    lines = _LINE_BREAKS.split(message)
    if lines and lines[-1] == b"":
        lines.pop()
    stuffed = [b"." + line if line.startswith(b".") else line for line in lines]
    return b"\r\n".join(stuffed) + b"\r\n"
