"""Delivery status notifications (RFC 3464): the multipart/report a sender gets when mail cannot be delivered."""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime

from mailiverse.outbound.smtpclient import clean_reply

_ENHANCED = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_SMTP_REPLY = re.compile(r"^[245]\d\d\b")
MAX_RETURNED_HEADER_BYTES = 64 * 1024


@dataclass(frozen=True)
class FailedRecipient:
    """One recipient the report is about."""

    address: str
    status: str  # enhanced status code, e.g. "5.1.1"
    diagnostic: str  # the remote server's reply, or our own reason
    remote_host: str | None = None


def enhanced_status(code: int, text: str, *, expired: bool = False) -> str:
    """The RFC 3463 status for a reply: the one in its text when given, else one from its class."""
    if expired:
        return "5.4.7"
    match = _ENHANCED.search(text or "")
    if match and match.group(1) == "5":
        return match.group(0)
    if 500 <= code < 600:
        return "5.0.0"
    return "5.4.7"


def original_headers(message: bytes | None) -> bytes | None:
    """The header section of the original message (bounded), for the text/rfc822-headers part."""
    if not message:
        return None
    head = message.split(b"\r\n\r\n", 1)[0][:MAX_RETURNED_HEADER_BYTES]
    return head + b"\r\n"


def build_dsn(
    *,
    reporting_mta: str,
    sender: str,
    sender_domain: str,
    failures: Sequence[FailedRecipient],
    arrival: datetime,
    original: bytes | None,
    now: datetime | None = None,
) -> bytes:
    """A complete RFC 5322 message (CRLF) reporting ``failures`` to ``sender``."""
    now = now or datetime.now(UTC)
    boundary = "mv-report-" + secrets.token_hex(12)
    mta = clean_reply(reporting_mta)
    lines = [
        f"From: Mail Delivery System <MAILER-DAEMON@{sender_domain}>",
        f"To: <{sender}>",
        "Subject: Undelivered Mail Returned to Sender",
        f"Date: {format_datetime(now)}",
        f"Message-ID: <{secrets.token_hex(16)}@{sender_domain}>",
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
        "",
        "This is a MIME-encapsulated delivery status notification.",
        "",
        f"--{boundary}",
        "Content-Type: text/plain; charset=us-ascii",
        "",
        f"Your message could not be delivered to {len(failures)} recipient(s):",
        "",
    ]
    for failure in failures:
        lines.append(f"  <{failure.address}>: {clean_reply(failure.diagnostic)}")
    lines += [
        "",
        f"--{boundary}",
        "Content-Type: message/delivery-status",
        "",
        f"Reporting-MTA: dns; {mta}",
        f"Arrival-Date: {format_datetime(arrival)}",
    ]
    for failure in failures:
        lines += [
            "",
            f"Final-Recipient: rfc822; {failure.address}",
            "Action: failed",
            f"Status: {failure.status}",
        ]
        if failure.remote_host:
            lines.append(f"Remote-MTA: dns; {clean_reply(failure.remote_host)}")
        diagnostic = clean_reply(failure.diagnostic)
        if _SMTP_REPLY.match(diagnostic):
            lines.append(f"Diagnostic-Code: smtp; {diagnostic}")
        else:
            lines.append(f"Diagnostic-Code: x-mailiverse; {diagnostic}")
        lines.append(f"Last-Attempt-Date: {format_datetime(now)}")
    text = "\r\n".join(lines).encode("ascii") + b"\r\n"
    headers = original_headers(original)
    if headers is not None:
        text += f"\r\n--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n".encode("ascii") + headers
    text += f"\r\n--{boundary}--\r\n".encode("ascii")
    return text
