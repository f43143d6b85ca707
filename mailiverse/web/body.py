"""Bounded request bodies: each route's cap, and strict JSON parsing.

Twisted reads a whole request body before a resource sees it, so the cap has to be applied while
the body arrives: ``mailiverse.web.intake.BoundedRequest`` applies ``body_limit_for`` (to a request
whose credential verifies; a few KiB otherwise) and answers 413 at once. ``read_json`` applies the
limits again inside the routes (which also covers requests that did not come through the Site).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

from mailiverse.web.errors import ApiError

#: Cap on JSON bodies of the small routes (login, logout, deletion).
SMALL_JSON_BYTES = 16 * 1024
#: Cap on JSON bodies that carry a key block (sign-up, password change): base64 of 64 KiB and change.
ACCOUNT_JSON_BYTES = 128 * 1024
#: Largest object body accepted by ``PUT /api/store/{path}`` (and the legacy Store API).
MAX_OBJECT_BYTES = 64 * 1024 * 1024


#: A message sealed on the sender's device comes as one copy per recipient: the request may be this many times
#: the largest message (a large message to many recipients is sent to fewer at a time).
SEALED_SEND_FACTOR = 4


def body_limit_for(max_message_size: int) -> Callable[[bytes], int]:
    """The per-path body caps the Site enforces while a body arrives (the legacy routes under
    ``/Mailiverse/`` have their own, ``mailiverse.legacy.web``)."""
    send_limit = (max_message_size + 2) // 3 * 4 + ACCOUNT_JSON_BYTES

    def limit(path: bytes) -> int:
        if path.startswith(b"/api/store/"):
            return MAX_OBJECT_BYTES
        if path == b"/api/send":
            return send_limit
        if path == b"/api/send/sealed":
            return SEALED_SEND_FACTOR * send_limit
        if path.startswith(b"/api/learn/"):
            return max_message_size
        return ACCOUNT_JSON_BYTES

    return limit


def is_oversized(request: Any) -> bool:
    """Whether the body of ``request`` was dropped for exceeding its cap."""
    return bool(getattr(request, "oversized", False))


def body_size(request: Any) -> int:
    """The number of body bytes held for ``request`` (its content file is left at the start)."""
    content = request.content
    if content is None:
        return 0
    content.seek(0, io.SEEK_END)
    size = int(content.tell())
    content.seek(0)
    return size


def check_body_size(request: Any, limit: int) -> None:
    """Raise 413 ``body_too_large`` if the body exceeded ``limit`` (or was dropped on arrival)."""
    if is_oversized(request) or body_size(request) > limit:
        raise ApiError("body_too_large", f"the request body is larger than {limit} bytes", 413)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError("duplicate key")
        result[key] = value
    return result


def _no_constants(name: str) -> Any:
    raise ValueError("NaN and Infinity are not JSON")


def read_json(request: Any, limit: int = SMALL_JSON_BYTES) -> dict[str, Any]:
    """Parse the body as one JSON object of at most ``limit`` bytes; errors are ApiError.

    Requires ``Content-Type: application/json`` (so a browser cannot send it cross-site
    without a CORS preflight), refuses duplicate keys, NaN/Infinity and non-object values.
    """
    content_type = (request.getHeader(b"content-type") or b"").split(b";", 1)[0]
    if content_type.strip().lower() != b"application/json":
        raise ApiError("unsupported_media_type", "send the body as application/json", 415)
    check_body_size(request, limit)
    raw = request.content.read(limit + 1) if request.content is not None else b""
    try:
        value = json.loads(
            raw.decode("utf-8"),
            object_pairs_hook=_no_duplicates,
            parse_constant=_no_constants,
        )
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ApiError("malformed_json", "the body is not valid JSON") from None
    if not isinstance(value, dict):
        raise ApiError("malformed_json", "the body must be a JSON object")
    return value


__all__ = [
    "ACCOUNT_JSON_BYTES",
    "MAX_OBJECT_BYTES",
    "SEALED_SEND_FACTOR",
    "SMALL_JSON_BYTES",
    "body_limit_for",
    "body_size",
    "check_body_size",
    "is_oversized",
    "read_json",
]
