"""The "MV" store request signature (docs/formats.md §8, docs/protocol.md §4.4).

``Authorization: MV <key id>:b64(HMAC-SHA1(b64decode(secret), string_to_sign))`` with
``string_to_sign = METHOD \\n \\n Content-Type \\n \\n X-Mv-Date \\n Resource``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from datetime import UTC, datetime

CREDENTIAL_SIZE = 32
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = (
    "Jan",
    "Feb",
    "Mar",
    "Apr",
    "May",
    "Jun",
    "Jul",
    "Aug",
    "Sep",
    "Oct",
    "Nov",
    "Dec",
)
_SCHEME = "MV "
#: Longest Authorization value we will look at.
MAX_AUTHORIZATION_LENGTH = 512


class SignatureError(ValueError):
    """An MV credential or Authorization value is malformed."""


def format_mv_date(ms: int) -> str:
    """``EEE, dd MMM yyyy HH:mm:ss GMT`` in English for a time in ms since the epoch, UTC."""
    t = datetime.fromtimestamp(ms // 1000, UTC)
    return (
        f"{_DAYS[t.weekday()]}, {t.day:02d} {_MONTHS[t.month - 1]} {t.year:04d} "
        f"{t.hour:02d}:{t.minute:02d}:{t.second:02d} GMT"
    )


def parse_mv_date(text: str) -> int:
    """Inverse of :func:`format_mv_date` (whole seconds, in ms); raises ValueError."""
    parts = text.split(" ")
    if len(parts) != 6 or parts[5] != "GMT" or parts[0][:-1] not in _DAYS or parts[2] not in _MONTHS:
        raise ValueError("not an X-Mv-Date value")
    hh, mm, ss = (int(x) for x in parts[4].split(":"))
    t = datetime(
        int(parts[3]),
        _MONTHS.index(parts[2]) + 1,
        int(parts[1]),
        hh,
        mm,
        ss,
        tzinfo=UTC,
    )
    if format_mv_date(int(t.timestamp()) * 1000) != text:
        raise ValueError("not an X-Mv-Date value")
    return int(t.timestamp()) * 1000


def string_to_sign(method: str, content_type: str, mv_date: str, resource: str) -> str:
    """The text the HMAC covers (Content-MD5 and Date are always empty)."""
    return f"{method}\n\n{content_type}\n\n{mv_date}\n{resource}"


def _secret(secret_b64: str) -> bytes:
    try:
        return base64.b64decode(secret_b64, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("the secret is not base64") from None


def sign(secret_b64: str, method: str, content_type: str, mv_date: str, resource: str) -> str:
    """Base64 HMAC-SHA1 signature of the request."""
    message = string_to_sign(method, content_type, mv_date, resource).encode("utf-8")
    digest = hmac.new(_secret(secret_b64), message, hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def authorization_header(
    key_id: str,
    secret_b64: str,
    method: str,
    content_type: str,
    mv_date: str,
    resource: str,
) -> str:
    """The ``Authorization`` header value: ``MV <key id>:<signature>``."""
    return f"{_SCHEME}{key_id}:{sign(secret_b64, method, content_type, mv_date, resource)}"


def parse_authorization(value: str) -> tuple[str, str]:
    """Split ``MV <key id>:<signature>`` into (key id, signature); raises SignatureError."""
    if len(value) > MAX_AUTHORIZATION_LENGTH or not value.startswith(_SCHEME):
        raise SignatureError("not an MV Authorization value")
    key_id, sep, signature = value[len(_SCHEME) :].rpartition(":")
    if not sep or not key_id or not signature:
        raise SignatureError("not an MV Authorization value")
    return key_id, signature


def verify(
    authorization: str,
    key_id: str,
    secret_b64: str,
    method: str,
    content_type: str,
    mv_date: str,
    resource: str,
) -> bool:
    """Whether ``authorization`` is the right header for this request; constant-time compare."""
    expected = authorization_header(key_id, secret_b64, method, content_type, mv_date, resource)
    return hmac.compare_digest(authorization.encode("utf-8"), expected.encode("utf-8"))


def request_headers(
    key_id: str,
    secret_b64: str,
    method: str,
    content_type: str,
    content_length: int,
    date_ms: int,
    resource: str,
) -> list[tuple[str, str]]:
    """The headers the original client sends: X-Mv-Date, (PUT: Content-Type, Content-Length), Authorization."""
    mv_date = format_mv_date(date_ms)
    headers = [("X-Mv-Date", mv_date)]
    if method == "PUT":
        headers.append(("Content-Type", content_type))
        headers.append(("Content-Length", str(content_length)))
    headers.append(
        (
            "Authorization",
            authorization_header(key_id, secret_b64, method, content_type, mv_date, resource),
        )
    )
    return headers


def new_credentials() -> tuple[str, str]:
    """A fresh (key id, secret), each base64 of 32 random bytes."""
    return (
        base64.b64encode(os.urandom(CREDENTIAL_SIZE)).decode("ascii"),
        base64.b64encode(os.urandom(CREDENTIAL_SIZE)).decode("ascii"),
    )
