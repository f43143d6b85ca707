"""The original's typed text envelope: ``<Java class name>!<compact JSON>``.

``java.lang.String`` values are written raw after the ``!`` (no JSON), and a
Java ``null`` is the four characters ``null``.  Class names are type tags the
receiver looks up, so they are kept exactly, ``$`` and misspellings included.
"""

from __future__ import annotations

import json
from typing import Any

JAVA_STRING = "java.lang.String"


class TypedEnvelopeError(ValueError):
    """The text is not a ``ClassName!payload`` envelope."""


def encode_typed(class_name: str, value: Any) -> str:
    """Return ``class_name!json`` (compact, like org.json), or the raw string form."""
    if "!" in class_name or not class_name:
        raise ValueError(f"invalid class name {class_name!r}")
    if class_name == JAVA_STRING:
        if not isinstance(value, str):
            raise TypeError("java.lang.String payload must be str")
        return f"{JAVA_STRING}!{value}"
    return class_name + "!" + json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def encode_null() -> str:
    return "null"


def decode_typed(text: str) -> tuple[str | None, Any]:
    """Split an envelope into ``(class_name, value)``; ``null`` gives ``(None, None)``."""
    if text == "null":
        return None, None
    class_name, sep, payload = text.partition("!")
    if not sep or not class_name or any(c.isspace() for c in class_name):
        raise TypedEnvelopeError("not a typed envelope")
    if class_name == JAVA_STRING:
        return class_name, payload
    try:
        return class_name, json.loads(payload)
    except ValueError as e:
        raise TypedEnvelopeError(f"payload of {class_name} is not JSON") from e


def decode_expected(text: str, class_name: str) -> Any:
    """Decode an envelope that must carry ``class_name``; anything else is an error."""
    found, value = decode_typed(text)
    if found != class_name:
        raise TypedEnvelopeError(f"expected {class_name}, got {found}")
    return value
