"""Reading a JSON twin the way the original client does (docs/protocol.md §2.3.4 "How the client reads it")."""

from __future__ import annotations

import base64
import binascii
import re
from collections import deque
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Person:
    name: str | None
    email: str | None


@dataclass(frozen=True)
class Attachment:
    """A ``bytes`` part: ``id`` from Content-Id, else a Content-Disposition with filename=."""

    id: str | None
    content_type: str | None
    filename: str | None
    data: bytes


@dataclass(frozen=True)
class Summary:
    subject: str | None
    author: Person | None
    to: list[Person] = field(default_factory=list)
    cc: list[Person] = field(default_factory=list)
    bcc: list[Person] = field(default_factory=list)
    reply_to: list[Person] = field(default_factory=list)
    date_ms: int | None = None
    text_body: str | None = None
    html_body: str | None = None
    attachments: list[Attachment] = field(default_factory=list)
    uidl: str | None = None
    is_error_document: bool = False


def _unb64(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        return base64.b64decode(value, validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return None


def _people(entries: Any) -> list[Person]:
    if not isinstance(entries, list):
        return []
    return [Person(_unb64(e.get("name")), _unb64(e.get("email"))) for e in entries if isinstance(e, dict)]


def _header(part: dict[str, Any], name: str, encoded: bool) -> str | None:
    for pair in part.get("headers") or []:
        if isinstance(pair, list) and len(pair) == 2 and str(pair[0]).lower() == name.lower():
            return _unb64(pair[1]) if encoded else str(pair[1])
    return None


_FILENAME = re.compile(r"""filename\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]+))""", re.IGNORECASE)


def _filename(disposition: str | None) -> str | None:
    if not disposition:
        return None
    m = _FILENAME.search(disposition)
    if m is None:
        return None
    return m.group(1) if m.group(1) is not None else m.group(2)


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def summarize(twin: dict[str, Any]) -> Summary:
    """Subject, people, date, bodies and attachments of one twin document."""
    is_error = "headers" in twin and "addresses" not in twin
    encoded = not is_error
    content = _mapping(twin.get("content"))
    addresses = _mapping(twin.get("addresses"))
    subject = _header(content, "subject", encoded)
    authors = _people(addresses.get("from"))
    dates = _mapping(twin.get("dates"))
    date_ms = None
    for key in ("sent", "received", "written"):
        value = dates.get(key)
        if isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value):
            date_ms = int(value)
            break
    text_body = html_body = None
    attachments: list[Attachment] = []
    queue: deque[dict[str, Any]] = deque([content])
    while queue:
        part = queue.popleft()
        kind = part.get("class")
        content_type = _header(part, "content-type", encoded)
        lowered = (content_type or "text/plain").lower()
        if kind == "part" and isinstance(part.get("value"), list):
            queue.extend(p for p in part["value"] if isinstance(p, dict))
        elif kind == "string" and isinstance(part.get("value"), str):
            if html_body is None and lowered.startswith("text/html"):
                html_body = part["value"]
            elif text_body is None and lowered.startswith("text/plain"):
                text_body = part["value"]
        elif kind == "bytes" and isinstance(part.get("value"), str):
            disposition = _header(part, "content-disposition", encoded)
            filename = _filename(disposition)
            content_id = _header(part, "content-id", encoded)
            try:
                data = base64.b64decode(part["value"])
            except (binascii.Error, ValueError):
                data = b""
            attachments.append(
                Attachment(
                    content_id if content_id is not None else filename and disposition, content_type, filename, data
                )
            )
    return Summary(
        subject=subject,
        author=authors[0] if authors else None,
        to=_people(addresses.get("to")),
        cc=_people(addresses.get("cc")),
        bcc=_people(addresses.get("bcc")),
        reply_to=_people(addresses.get("reply-to")),
        date_ms=date_ms,
        text_body=text_body,
        html_body=html_body,
        attachments=attachments,
        uidl=twin.get("uidl") if isinstance(twin.get("uidl"), str) else None,
        is_error_document=is_error,
    )
