"""org.json (2012-07-02) compatible JSON text: compact, its escaping, insertion member order."""

from __future__ import annotations

import re
from typing import Any

_NEEDS_ESCAPE = re.compile('[\\\\"\x00-\x1f\x80-\x9f\u2000-\u20ff]|</')
_SHORT = {"\\": "\\\\", '"': '\\"', "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _escape(match: re.Match[str]) -> str:
    text = match.group()
    if text == "</":
        return "<\\/"
    short = _SHORT.get(text)
    if short is not None:
        return short
    return f"\\u{ord(text):04x}"


def quote(value: str) -> str:
    """A JSON string literal escaped exactly as org.json's ``JSONObject.quote``."""
    return '"' + _NEEDS_ESCAPE.sub(_escape, value) + '"'


def dumps(value: Any) -> str:
    """Serialise dicts (in insertion order), lists and strings the way org.json does."""
    out: list[str] = []
    # An explicit stack keeps arbitrarily deep values from exhausting recursion.
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, _Raw):
            out.append(item.text)
        elif isinstance(item, str):
            out.append(quote(item))
        elif isinstance(item, dict):
            pending: list[Any] = [_Raw("}")]
            entries = list(item.items())
            for index in range(len(entries) - 1, -1, -1):
                key, member = entries[index]
                pending.append(member)
                pending.append(_Raw(("," if index else "") + quote(str(key)) + ":"))
            pending.append(_Raw("{"))
            stack.extend(pending)
        elif isinstance(item, list):
            pending = [_Raw("]")]
            for index in range(len(item) - 1, -1, -1):
                pending.append(item[index])
                if index:
                    pending.append(_Raw(","))
            pending.append(_Raw("["))
            stack.extend(pending)
        elif item is None:
            out.append("null")
        elif isinstance(item, bool):
            out.append("true" if item else "false")
        elif isinstance(item, int):
            out.append(str(item))
        else:
            raise TypeError(f"cannot serialise {type(item).__name__}")
    return "".join(out)


class _Raw:
    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text
