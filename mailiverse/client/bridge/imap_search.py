"""IMAP SEARCH (RFC 3501 §6.4.4) over one mailbox, done here on decrypted data: the search keys parsed into a tree
that is checked first, then matched message by message.

Keys that only need the listing (flags, UIDs, sizes, dates) never load a message; the others are matched against
headers decoded from RFC 2047 and against the decoded text of ``text/*`` parts, case-insensitively, as substrings.
Sequence sets (``1:*``, ``UID 5:9``) are parsed here too, for SEARCH and for every command that takes one.
"""

from __future__ import annotations

import datetime
import email.utils
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.message import Message

from mailiverse.client.bridge.imap_message import decoded_header
from mailiverse.client.bridge.model import MessageRef

#: The largest number a sequence set may name (nz-number is a 32-bit unsigned number).
MAX_NUMBER = 2**32 - 1
_SET_ITEM = re.compile(rb"(\d+|\*)(?::(\d+|\*))?")
_DATE = re.compile(rb"(\d{1,2})-([A-Za-z]{3})-(\d{4})")
_MONTHS = [b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov", b"dec"]
#: The charsets SEARCH accepts (RFC 3501 requires US-ASCII; UTF-8 is what mail apps send).
CHARSETS = (b"US-ASCII", b"UTF-8")


class SearchSyntaxError(ValueError):
    """The search keys or a sequence set do not parse: the command gets ``BAD``."""


@dataclass(frozen=True)
class SequenceSet:
    """A sequence set as sent: ranges whose ends are numbers or None for ``*``."""

    ranges: tuple[tuple[int | None, int | None], ...]

    @classmethod
    def parse(cls, text: bytes) -> SequenceSet:
        ranges = []
        for item in text.split(b","):
            found = _SET_ITEM.fullmatch(item)
            if found is None:
                raise SearchSyntaxError("bad sequence set")
            ends = [None if end in (None, b"*") else int(end) for end in found.groups()]
            low = ends[0]
            high = low if found.group(2) is None else ends[1]
            for end in (low, high):
                if end is not None and not 1 <= end <= MAX_NUMBER:
                    raise SearchSyntaxError("bad sequence set")
            ranges.append((low, high))
        return cls(tuple(ranges))

    def resolve(self, largest: int) -> list[tuple[int, int]]:
        """The ranges as (low, high) with ``*`` as ``largest`` (a range's ends may come in either order)."""
        resolved = []
        for low, high in self.ranges:
            a = largest if low is None else low
            b = largest if high is None else high
            resolved.append((min(a, b), max(a, b)))
        return resolved

    def contains(self, number: int, largest: int) -> bool:
        return any(low <= number <= high for low, high in self.resolve(largest))

    def highest(self, largest: int) -> int:
        return max(high for _, high in self.resolve(largest))


# --- tokens and the key tree --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Token:
    """An atom (``kind`` ``atom``), a string (quoted or literal), or ``(`` / ``)``."""

    kind: str
    value: bytes


_ATOM = re.compile(rb'[^\s()"{]+')


def tokenize(line: bytes) -> tuple[list[Token], int | None]:
    """The tokens of ``line``, and the size of the literal it ends with (``{n}``), if any."""
    tokens: list[Token] = []
    position = 0
    while position < len(line):
        char = line[position : position + 1]
        if char in (b" ", b"\t"):
            position += 1
        elif char in (b"(", b")"):
            tokens.append(Token(char.decode(), char))
            position += 1
        elif char == b'"':
            value = bytearray()
            position += 1
            while True:
                if position >= len(line):
                    raise SearchSyntaxError("unterminated quoted string")
                char = line[position : position + 1]
                if char == b"\\" and position + 1 < len(line):
                    value += line[position + 1 : position + 2]
                    position += 2
                elif char == b'"':
                    position += 1
                    break
                else:
                    value += char
                    position += 1
            tokens.append(Token("string", bytes(value)))
        elif char == b"{":
            found = re.fullmatch(rb"\{(\d{1,12})\}", line[position:])
            if found is None:
                raise SearchSyntaxError("malformed literal")
            return tokens, int(found.group(1))
        else:
            atom = _ATOM.match(line, position)
            assert atom is not None
            tokens.append(Token("atom", atom.group()))
            position = atom.end()
    return tokens, None


@dataclass(frozen=True)
class Key:
    """One search key: its name (upper case) and arguments (strings, numbers, dates, sets, sub-keys)."""

    name: str
    args: tuple[object, ...] = ()


_FLAG_KEYS = {
    "ANSWERED": ("\\Answered", True),
    "DELETED": ("\\Deleted", True),
    "DRAFT": ("\\Draft", True),
    "FLAGGED": ("\\Flagged", True),
    "SEEN": ("\\Seen", True),
    "UNANSWERED": ("\\Answered", False),
    "UNDELETED": ("\\Deleted", False),
    "UNDRAFT": ("\\Draft", False),
    "UNFLAGGED": ("\\Flagged", False),
    "UNSEEN": ("\\Seen", False),
}
_NO_ARGUMENT = {"ALL", "NEW", "OLD", "RECENT", *_FLAG_KEYS}
_STRING_ARGUMENT = {"BCC", "BODY", "CC", "FROM", "SUBJECT", "TEXT", "TO", "KEYWORD", "UNKEYWORD"}
_DATE_ARGUMENT = {"BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE"}
_CONTENT_KEYS = {"BCC", "BODY", "CC", "FROM", "SUBJECT", "TEXT", "TO", "HEADER", "SENTBEFORE", "SENTON", "SENTSINCE"}
_MAX_DEPTH = 50


def parse_keys(tokens: Sequence[Token]) -> list[Key]:
    """The key tree of a SEARCH command's tokens (all keys must match)."""
    keys, position = _parse_list(list(tokens), 0, 0)
    if position != len(tokens):
        raise SearchSyntaxError("unbalanced parentheses")
    if not keys:
        raise SearchSyntaxError("missing search keys")
    return keys


def _parse_list(tokens: list[Token], position: int, depth: int) -> tuple[list[Key], int]:
    keys = []
    while position < len(tokens) and tokens[position].kind != ")":
        key, position = _parse_key(tokens, position, depth)
        keys.append(key)
    return keys, position


def _take(tokens: list[Token], position: int) -> tuple[bytes, int]:
    if position >= len(tokens) or tokens[position].kind not in ("atom", "string"):
        raise SearchSyntaxError("missing search argument")
    return tokens[position].value, position + 1


def _parse_key(tokens: list[Token], position: int, depth: int) -> tuple[Key, int]:
    if depth > _MAX_DEPTH:
        raise SearchSyntaxError("search keys nested too deeply")
    token = tokens[position]
    position += 1
    if token.kind == "(":
        keys, position = _parse_list(tokens, position, depth + 1)
        if position >= len(tokens) or not keys:
            raise SearchSyntaxError("unbalanced parentheses")
        return Key("AND", tuple(keys)), position + 1
    if token.kind != "atom":
        raise SearchSyntaxError("a search key must be an atom")
    name = token.value.upper().decode("ascii", "replace")
    if token.value[:1].isdigit() or token.value[:1] == b"*":
        return Key("SEQ", (SequenceSet.parse(token.value),)), position
    if name in _NO_ARGUMENT:
        return Key(name), position
    if name in ("NOT",):
        if position >= len(tokens):
            raise SearchSyntaxError("NOT needs a key")
        inner, position = _parse_key(tokens, position, depth + 1)
        return Key(name, (inner,)), position
    if name == "OR":
        if position >= len(tokens):
            raise SearchSyntaxError("OR needs two keys")
        first, position = _parse_key(tokens, position, depth + 1)
        if position >= len(tokens):
            raise SearchSyntaxError("OR needs two keys")
        second, position = _parse_key(tokens, position, depth + 1)
        return Key(name, (first, second)), position
    if name in _STRING_ARGUMENT:
        value, position = _take(tokens, position)
        return Key(name, (value.decode("utf-8", "replace").casefold(),)), position
    if name == "HEADER":
        field_name, position = _take(tokens, position)
        value, position = _take(tokens, position)
        return Key(name, (field_name.decode("ascii", "replace"), value.decode("utf-8", "replace").casefold())), position
    if name in _DATE_ARGUMENT:
        value, position = _take(tokens, position)
        return Key(name, (_parse_date(value),)), position
    if name in ("LARGER", "SMALLER"):
        value, position = _take(tokens, position)
        if not value.isdigit() or len(value) > 20:
            raise SearchSyntaxError("a size must be a number")
        return Key(name, (int(value),)), position
    if name == "UID":
        value, position = _take(tokens, position)
        return Key(name, (SequenceSet.parse(value),)), position
    raise SearchSyntaxError("unknown search key")


def _parse_date(value: bytes) -> datetime.date:
    found = _DATE.fullmatch(value)
    if found is None or found.group(2).lower() not in _MONTHS:
        raise SearchSyntaxError("a date is d-Mon-yyyy")
    try:
        return datetime.date(int(found.group(3)), _MONTHS.index(found.group(2).lower()) + 1, int(found.group(1)))
    except ValueError:
        raise SearchSyntaxError("no such date") from None


def needs_content(keys: Sequence[Key]) -> bool:
    """Whether matching needs the message itself, not only its listing."""
    for key in keys:
        if key.name in _CONTENT_KEYS:
            return True
        if any(isinstance(arg, Key) and needs_content([arg]) for arg in key.args):
            return True
    return False


# --- matching -----------------------------------------------------------------------------------------------------


@dataclass
class Candidate:
    """One message as SEARCH sees it: its place, its listing, and (when a key needs it) its content."""

    sequence: int
    ref: MessageRef
    last_sequence: int
    last_uid: int
    fields: Message | None = None
    text: Callable[[], str] | None = None


def matches(keys: Sequence[Key], candidate: Candidate) -> bool:
    return all(_match(key, candidate) for key in keys)


def _contains(haystack: str, needle: object) -> bool:
    return str(needle) in haystack.casefold()


def _header_text(candidate: Candidate, name: str) -> str:
    return decoded_header(candidate.fields, name) if candidate.fields is not None else ""


def _sent_date(candidate: Candidate) -> datetime.date | None:
    if candidate.fields is None:
        return None
    value = candidate.fields.get("date")
    if value is None:
        return None
    try:
        return email.utils.parsedate_to_datetime(str(value)).date()
    except (TypeError, ValueError, IndexError):
        return None


def _match(key: Key, candidate: Candidate) -> bool:  # noqa: C901 - one branch per key is the clearest form
    ref = candidate.ref
    name = key.name
    if name == "AND":
        return all(_match(inner, candidate) for inner in key.args if isinstance(inner, Key))
    if name == "NOT":
        inner = key.args[0]
        return isinstance(inner, Key) and not _match(inner, candidate)
    if name == "OR":
        return any(_match(inner, candidate) for inner in key.args if isinstance(inner, Key))
    if name in ("ALL", "OLD"):
        return True
    if name in ("NEW", "RECENT"):
        return False  # the bridge never reports \Recent
    if name in _FLAG_KEYS:
        flag, wanted = _FLAG_KEYS[name]
        return (flag in ref.flags) == wanted
    if name in ("KEYWORD", "UNKEYWORD"):
        present = any(flag.casefold() == key.args[0] for flag in ref.flags)
        return present == (name == "KEYWORD")
    if name == "SEQ":
        numbers = key.args[0]
        return isinstance(numbers, SequenceSet) and numbers.contains(candidate.sequence, candidate.last_sequence)
    if name == "UID":
        numbers = key.args[0]
        return isinstance(numbers, SequenceSet) and numbers.contains(ref.uid, candidate.last_uid)
    if name == "LARGER":
        return ref.size > int(str(key.args[0]))
    if name == "SMALLER":
        return ref.size < int(str(key.args[0]))
    if name in ("BEFORE", "ON", "SINCE"):
        day = datetime.datetime.fromtimestamp(ref.internal_ms / 1000, datetime.UTC).date()
        return _compare(name, day, key.args[0])
    if name in ("SENTBEFORE", "SENTON", "SENTSINCE"):
        sent = _sent_date(candidate)
        return sent is not None and _compare(name[4:], sent, key.args[0])
    if name in ("FROM", "TO", "CC", "BCC", "SUBJECT"):
        return _contains(_header_text(candidate, name.lower()), key.args[0])
    if name == "HEADER":
        field_name, needle = key.args
        text = _header_text(candidate, str(field_name))
        return (candidate.fields is not None and candidate.fields.get(str(field_name)) is not None) and _contains(
            text, needle
        )
    if name == "BODY":
        return candidate.text is not None and _contains(candidate.text(), key.args[0])
    if name == "TEXT":
        headers = "\n".join(f"{k}: {_header_text(candidate, k)}" for k in _field_names(candidate))
        body = candidate.text() if candidate.text is not None else ""
        return _contains(headers, key.args[0]) or _contains(body, key.args[0])
    raise SearchSyntaxError("unknown search key")


def _field_names(candidate: Candidate) -> list[str]:
    return list(dict.fromkeys(candidate.fields.keys())) if candidate.fields is not None else []


def _compare(how: str, day: datetime.date, against: object) -> bool:
    assert isinstance(against, datetime.date)
    if how == "BEFORE":
        return day < against
    if how == "ON":
        return day == against
    return day >= against
