"""org.json (2012-07-02) compatible JSON text: compact, its escaping, insertion member order."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

#: The two-character escapes, done as plain replacements (each one C pass over the text) rather than
#: a regular expression calling back into Python at every line break. The backslash goes first so
#: the backslashes added later are not doubled; none of them adds a '<', '/' or escapable character.
_SHORT = (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t"), ("\b", "\\b"), ("\f", "\\f"))
#: What org.json writes as \uXXXX: the other controls, C1 and U+2000-20FF.
_NEEDS_UNICODE_ESCAPE = re.compile("[\x00-\x07\x0b\x0e-\x1f\x80-\x9f\u2000-\u20ff]")
#: ``iter_dumps`` yields text in batches of about this many characters.
BATCH_CHARS = 64 * 1024


class Streamed:
    """A value that writes its own JSON text in pieces, so a large one never exists as one string.

    The twin's attachment bodies use it: their Base64 text is produced as it is serialised.
    """

    def iter_json(self) -> Iterator[str]:
        """The value's JSON text (quotes and escapes included), in pieces of any size."""
        raise NotImplementedError


def _unicode_escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def _escape(text: str) -> str:
    """``text`` escaped as org.json's ``JSONObject.quote`` does, without the quotes."""
    for char, escaped in _SHORT:
        if char in text:
            text = text.replace(char, escaped)
    if "</" in text:
        text = text.replace("</", "<\\/")
    return _NEEDS_UNICODE_ESCAPE.sub(_unicode_escape, text)


def quote(value: str) -> str:
    """A JSON string literal escaped exactly as org.json's ``JSONObject.quote``."""
    return '"' + _escape(value) + '"'


def _quote_pieces(value: str, piece_chars: int) -> Iterator[str]:
    """``quote(value)`` in pieces of about ``piece_chars`` characters, for long strings.

    A piece never ends in ``<``, so the two-character escape ``</`` is never split.
    """
    if len(value) <= piece_chars:
        yield quote(value)
        return
    yield '"'
    start = 0
    while start < len(value):
        end = min(start + piece_chars, len(value))
        while end < len(value) and value[end - 1] == "<":
            end += 1
        yield _escape(value[start:end])
        start = end
    yield '"'


def _expand(item: Any, stack: list[Any], piece_chars: int) -> str | Iterator[str]:
    """The text of a scalar (pieces of a long string or a Streamed); a container pushes its parts on ``stack``."""
    if isinstance(item, _Raw):
        return item.text
    if isinstance(item, str):
        return quote(item) if len(item) <= piece_chars else _quote_pieces(item, piece_chars)
    if isinstance(item, Streamed):
        return item.iter_json()
    if isinstance(item, dict):
        pending: list[Any] = [_Raw("}")]
        entries = list(item.items())
        for index in range(len(entries) - 1, -1, -1):
            key, member = entries[index]
            pending.append(member)
            pending.append(_Raw(("," if index else "") + quote(str(key)) + ":"))
        pending.append(_Raw("{"))
        stack.extend(pending)
        return ""
    if isinstance(item, list):
        pending = [_Raw("]")]
        for index in range(len(item) - 1, -1, -1):
            pending.append(item[index])
            if index:
                pending.append(_Raw(","))
        pending.append(_Raw("["))
        stack.extend(pending)
        return ""
    if item is None:
        return "null"
    if isinstance(item, bool):
        return "true" if item else "false"
    if isinstance(item, int):
        return str(item)
    if isinstance(item, float):
        return _number(item)
    raise TypeError(f"cannot serialise {type(item).__name__}")


def _number(value: float) -> str:
    """A finite float as org.json's ``numberToString`` writes it: no trailing zeros, no trailing point
    (5.0 -> "5", 8.25 -> "8.25"). Only plain decimals (the spam score's range): an exponent is refused."""
    text = repr(value)
    if value != value or value in (float("inf"), float("-inf")) or "e" in text:
        raise TypeError("cannot serialise a float that is not a plain finite decimal")
    return text.rstrip("0").rstrip(".") if "." in text else text


def iter_dumps(value: Any, batch_chars: int = BATCH_CHARS) -> Iterator[str]:
    """``dumps(value)`` as consecutive batches of about ``batch_chars`` characters (never empty).

    Lets a caller encode and encrypt a large twin as it is written, instead of holding its whole text.
    """
    batch: list[str] = []
    length = 0
    # An explicit stack keeps arbitrarily deep values from exhausting recursion.
    stack: list[Any] = [value]
    while stack:
        text = _expand(stack.pop(), stack, batch_chars)
        for piece in (text,) if isinstance(text, str) else text:
            batch.append(piece)
            length += len(piece)
            if length >= batch_chars:
                yield "".join(batch)
                batch.clear()
                length = 0
    if length:
        yield "".join(batch)


def dumps(value: Any) -> str:
    """Serialise dicts (in insertion order), lists and strings the way org.json does."""
    return "".join(iter_dumps(value))


class _Raw:
    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text
