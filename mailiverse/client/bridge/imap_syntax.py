"""The small pieces of IMAP syntax the bridge's server reads and writes (RFC 3501 §9): quoted strings, atoms, flags,
dates, mailbox names in modified UTF-7, literal announcements, and the texts that go back in responses.

Pure functions over bytes; the protocol (``imap.py``) owns the connection and the reading of literals. Every
reader raises ``IllegalClientResponse`` (answered ``BAD``) on input it does not accept, never anything else.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable, Sequence

from twisted.mail.imap4 import IllegalClientResponse, IllegalMailboxEncoding

from mailiverse.client.bridge.imap_message import string
from mailiverse.client.bridge.model import SYSTEM_FLAGS

#: ATOM-CHAR and ASTRING-CHAR (RFC 3501 §9), and the same with the LIST wildcards.
_ATOM = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\\]]+')
_ASTRING_ATOM = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\]+')
_LIST_ATOM = re.compile(rb'[^\x00-\x20\x7f-\xff(){"\\]+')
_FLAG = re.compile(rb"\\?[^\x00-\x20\x7f-\xff(){%*\"\\\]]+")
_LITERAL = re.compile(rb"\{(\d{1,20})(\+?)\}")
_TAG = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\+]+')
_DATE_TIME = re.compile(rb"([ \d]\d)-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_CANONICAL_FLAGS = {flag.lower(): flag for flag in SYSTEM_FLAGS}


class NonSynchronizingLiteral(IllegalClientResponse):
    """A ``{n+}`` literal: its bytes are already on the way, so the connection cannot be read on after it."""


def valid_tag(tag: bytes) -> bool:
    return _TAG.fullmatch(tag) is not None


def literal_size(line: bytes) -> int | None:
    """The size of the literal ``line`` announces when it is exactly ``{n}``; None when it is no literal."""
    found = _LITERAL.fullmatch(line.strip())
    if found is None:
        return None
    if found.group(2):
        raise NonSynchronizingLiteral("non-synchronizing literals are not supported")
    return int(found.group(1))


def quoted(line: bytes) -> tuple[bytes, bytes]:
    """A quoted string at the start of ``line`` (backslash escapes undone) and what follows it."""
    assert line[:1] == b'"'
    value = bytearray()
    position = 1
    while position < len(line):
        char = line[position : position + 1]
        if char == b"\\":
            escaped = line[position + 1 : position + 2]
            if escaped not in (b"\\", b'"'):
                raise IllegalClientResponse("bad escape in a quoted string")
            value += escaped
            position += 2
        elif char == b'"':
            return bytes(value), line[position + 1 :]
        else:
            value += char
            position += 1
    raise IllegalClientResponse("unterminated quoted string")


def atom(line: bytes, *, astring: bool = False, wildcards: bool = False) -> tuple[bytes, bytes]:
    """An atom at the start of ``line`` and what follows it."""
    pattern = _LIST_ATOM if wildcards else _ASTRING_ATOM if astring else _ATOM
    found = pattern.match(line)
    if found is None:
        raise IllegalClientResponse("malformed argument")
    return found.group(), line[found.end() :]


def flag_list(line: bytes) -> tuple[list[str], bytes]:
    """A flag list (``(\\Seen kw)``, or bare flags up to the end of the line as STORE allows) and what follows.

    System flags come back in their canonical spelling; ``\\Recent`` is dropped (no client may set it)."""
    line = line.lstrip(b" ")
    if line.startswith(b"("):
        end = line.find(b")")
        if end < 0:
            raise IllegalClientResponse("unbalanced parentheses in a flag list")
        inside, rest = line[1:end], line[end + 1 :]
    else:
        inside, rest = line, b""
    flags: list[str] = []
    for word in inside.split():
        if _FLAG.fullmatch(word) is None:
            raise IllegalClientResponse("malformed flag")
        text = word.decode("ascii")
        if text.startswith("\\"):
            canonical = _CANONICAL_FLAGS.get(text.lower())
            if text.lower() == "\\recent":
                continue
            if canonical is None:
                raise IllegalClientResponse("unknown system flag")
            text = canonical
        if text not in flags:
            flags.append(text)
    return flags, rest


def date_time(value: bytes) -> int:
    """An APPEND date-time (``"17-Jul-1996 02:44:25 -0700"``) as milliseconds since the epoch."""
    found = _DATE_TIME.fullmatch(value)
    if found is None or found.group(2).decode().title() not in MONTHS:
        raise IllegalClientResponse("a date-time is dd-Mon-yyyy hh:mm:ss +zzzz")
    day, month, year, hour, minute, second, sign, zone_h, zone_m = found.groups()
    offset = datetime.timedelta(hours=int(zone_h), minutes=int(zone_m)) * (-1 if sign == b"-" else 1)
    try:
        when = datetime.datetime(
            int(year),
            MONTHS.index(month.decode().title()) + 1,
            int(day),
            int(hour),
            int(minute),
            int(second),
            tzinfo=datetime.timezone(offset),
        )
    except ValueError:
        raise IllegalClientResponse("no such date-time") from None
    return int(when.timestamp() * 1000)


def internal_date(milliseconds: int) -> bytes:
    """INTERNALDATE as a quoted date-time in UTC."""
    when = datetime.datetime.fromtimestamp(milliseconds / 1000, datetime.UTC)
    return b'"%02d-%s-%04d %02d:%02d:%02d +0000"' % (
        when.day,
        MONTHS[when.month - 1].encode(),
        when.year,
        when.hour,
        when.minute,
        when.second,
    )


def decode_mailbox(raw: bytes) -> str:
    """A mailbox name from modified UTF-7 (RFC 3501 §5.1.3), refusing anything that is not its canonical form."""
    try:
        name = raw.decode("imap4-utf-7")
        canonical = name.encode("imap4-utf-7")
    except Exception:  # noqa: BLE001 - the codec raises several types on garbage; all mean the same
        raise IllegalMailboxEncoding("mailbox name is not modified UTF-7") from None
    if canonical != raw:
        raise IllegalMailboxEncoding("mailbox name is not modified UTF-7")
    return name


def encode_mailbox(name: str) -> bytes:
    """A mailbox name as a string on the wire."""
    return string(name.encode("imap4-utf-7"))


def flags_wire(flags: Iterable[str]) -> bytes:
    """A flag list, system flags first."""
    ordered = sorted(flags, key=lambda flag: (not flag.startswith("\\"), flag.lower()))
    return b"(" + b" ".join(flag.encode("ascii", "replace") for flag in ordered) + b")"


def uid_set(uids: Sequence[int]) -> bytes:
    """UIDs in sequence-set form, runs collapsed (``4:6,9``), in the order given (COPYUID pairs them by position)."""
    runs: list[list[int]] = []
    for uid in uids:
        if runs and uid == runs[-1][1] + 1:
            runs[-1][1] = uid
        else:
            runs.append([uid, uid])
    return b",".join(b"%d" % low if low == high else b"%d:%d" % (low, high) for low, high in runs)


def response_text(text: str) -> bytes:
    """Text that may end a response line: printable ASCII, one line, bounded."""
    cleaned = "".join(char if " " <= char <= "~" else " " for char in text).strip()
    return cleaned[:300].encode("ascii") or b"refused"
