"""Request validation: the fields, headers and query values of API requests, checked into typed values.

Every check raises ``ApiError`` with code ``invalid_request`` (or ``invalid_precondition``) and
a message naming the field, so a client can tell what to fix.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from mailiverse.accounts.service import Proof
from mailiverse.auth.devices import DEVICE_COOKIE
from mailiverse.auth.forwarded import client_address
from mailiverse.store.objects import ObjectInfo
from mailiverse.web.errors import ApiError

#: Most addresses one list field (to, cc, bcc, recipients) may hold.
MAX_LIST_ADDRESSES = 100


def b64(data: bytes) -> str:
    """Standard base64 with padding, as every byte field of the API is written."""
    return base64.b64encode(data).decode("ascii")


def field(body: dict[str, Any], name: str, *, optional: bool = False) -> Any:
    """The value of ``name``; missing (or null) is an error unless ``optional``."""
    if name not in body or body[name] is None:
        if optional:
            return None
        raise ApiError("invalid_request", f"the field {name!r} is missing")
    return body[name]


def text(body: dict[str, Any], name: str, limit: int) -> str:
    """A required text field of at most ``limit`` characters."""
    value = optional_text(body, name, limit)
    if value is None:
        raise ApiError("invalid_request", f"the field {name!r} is missing")
    return value


def optional_text(body: dict[str, Any], name: str, limit: int) -> str | None:
    """A text field of at most ``limit`` characters, or None when absent."""
    value = field(body, name, optional=True)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise ApiError("invalid_request", f"the field {name!r} must be text of at most {limit} characters")
    return value


def base64_bytes(body: dict[str, Any], name: str, limit: int) -> bytes:
    """A required base64 field decoding to at most about ``limit`` bytes."""
    value = field(body, name)
    if not isinstance(value, str) or len(value) > (limit + 2) // 3 * 4:
        raise ApiError("invalid_request", f"the field {name!r} must be base64 text")
    try:
        return base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise ApiError("invalid_request", f"the field {name!r} is not valid base64") from None


def proof(body: Any) -> Proof:
    """An SRP proof ``{handle, A, M}``."""
    if not isinstance(body, dict):
        raise ApiError("invalid_request", "the proof must be an object {handle, A, M}")
    return Proof(handle=text(body, "handle", 64), A=base64_bytes(body, "A", 512), M=base64_bytes(body, "M", 64))


def device_token(request: Any, body: Any) -> str | None:
    """The device token a login shows: the ``device`` field (native clients), else the browser's cookie."""
    if isinstance(body, dict) and body.get("device") is not None:
        value = body["device"]
        if not isinstance(value, str) or len(value) > 128:
            raise ApiError("invalid_request", "the field 'device' must be the device token text")
        return value
    cookie = request.getCookie(DEVICE_COOKIE.encode("ascii"))
    return cookie.decode("latin-1") if cookie is not None else None


def address_list(body: dict[str, Any], name: str) -> tuple[str, ...]:
    """A list of at most ``MAX_LIST_ADDRESSES`` address strings (checked as addresses by the submission service)."""
    value = body.get(name) or []
    if not isinstance(value, list) or len(value) > MAX_LIST_ADDRESSES or not all(isinstance(v, str) for v in value):
        raise ApiError("invalid_request", f"the field {name!r} must be a list of addresses")
    return tuple(value)


def optional_int(body: dict[str, Any], name: str) -> int | None:
    """An integer field (not a boolean), or None when absent."""
    value = body.get(name)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise ApiError("invalid_request", f"{name} must be an integer")
    return value


def etag(version: int) -> bytes:
    """The ETag of an object version."""
    return f'"{version}"'.encode("ascii")


def parse_etag(value: bytes) -> int:
    """The version an If-Match ETag names (weak or strong)."""
    tag = value.decode("latin-1").strip()
    if tag.startswith("W/"):
        tag = tag[2:]
    tag = tag.strip('"')
    if not tag.isascii() or not tag.isdigit() or len(tag) > 18:
        raise ApiError("invalid_precondition", "If-Match needs an ETag from this API", 400)
    return int(tag)


def object_json(info: ObjectInfo) -> dict[str, Any]:
    """An object's metadata as the store routes answer it."""
    return {
        "path": info.path,
        "version": info.version,
        "size": info.size,
        "created_ms": info.created_ms,
        "modified_ms": info.modified_ms,
    }


def import_flag(request: Any) -> bool:
    """Whether a store PUT asks to import an original object (``?import=1``); other values are refused."""
    values = request.args.get(b"import")
    if values is None:
        return False
    if values != [b"1"]:
        raise ApiError("invalid_request", "import takes the value 1, once")
    return True


def query_arg(request: Any, name: bytes) -> str | None:
    """A query value given at most once, as UTF-8 text; None when absent."""
    values = request.args.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise ApiError("invalid_request", f"give {name.decode()} once")
    try:
        return str(values[0].decode("utf-8"))
    except UnicodeDecodeError:
        raise ApiError("invalid_request", "query values must be UTF-8") from None


def client_ip(request: Any) -> str:
    """The address the request counts as for rate limits: the peer's IP, or behind a trusted proxy the
    client it forwards ("0.0.0.0" for a peer that has none, such as a UNIX socket)."""
    return client_address(request)


__all__ = [
    "address_list",
    "b64",
    "base64_bytes",
    "client_ip",
    "device_token",
    "etag",
    "field",
    "import_flag",
    "object_json",
    "optional_int",
    "optional_text",
    "parse_etag",
    "proof",
    "query_arg",
    "text",
]
