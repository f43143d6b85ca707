"""``POST /api/send``: a structured or raw message from the logged-in user, handed to the submission service."""

from __future__ import annotations

import datetime
import time
from collections.abc import Sequence
from email.utils import getaddresses
from typing import Any

from mailiverse import hashcash
from mailiverse.submission import Composed, Submitted, compose
from mailiverse.submission.sender import header_fields
from mailiverse.web.body import body_limit_for, read_json
from mailiverse.web.errors import ApiError, json_response
from mailiverse.web.routing import router
from mailiverse.web.session import RouteBase
from mailiverse.web.validation import address_list, base64_bytes, optional_text

#: Longest subject accepted (RFC 5322's line limit).
MAX_SUBJECT_CHARS = 998


class SendRoutes(RouteBase):
    """Sending; the rules (whose From, which recipients, where each goes) are the submission service's."""

    @router.route("/api/send", methods=["POST"])
    async def send(self, request: Any) -> bytes:
        _record, user = await self.user_of(request)
        body = read_json(request, body_limit_for(self.max_message_size)(b"/api/send"))
        recipients: Sequence[str] | None = None
        if "message" in body:
            message = base64_bytes(body, "message", self.max_message_size)
            if "recipients" in body:
                recipients = address_list(body, "recipients")
        else:
            composed = Composed(
                to=address_list(body, "to"),
                cc=address_list(body, "cc"),
                bcc=address_list(body, "bcc"),
                subject=optional_text(body, "subject", MAX_SUBJECT_CHARS) or "",
                text=optional_text(body, "text", self.max_message_size) or "",
                from_address=optional_text(body, "from", 254),
            )
            message = compose(
                composed,
                default_from=self.addresses(user)[0],
                hostname=self.hostname,
                now_ms=time.time_ns() // 1_000_000,
            )
            recipients = [*composed.to, *composed.cc, *composed.bcc]
        stamp = body.get("hashcash", False)
        if not isinstance(stamp, bool):
            raise ApiError("invalid_request", "hashcash is true or false")
        if stamp:
            message = await _stamped(message, recipients)
        result = await self.submission.submit(self.submission.submitter(user.name, user), message, recipients)
        return json_response(request, submitted_json(result))


def submitted_json(result: Submitted) -> dict[str, Any]:
    """Where a sent message went, as ``/api/send`` and ``/api/send/sealed`` answer."""
    return {
        "from": result.mail_from,
        "local": list(result.local),
        "remote": list(result.remote),
        "queue_id": result.queue_id,
        "sent": result.sent_path,
    }


#: Recipients one message may carry stamps for (each about 0.4 s of a thread's work).
MAX_STAMPED_RECIPIENTS = 10


async def _stamped(message: bytes, recipients: Sequence[str] | None) -> bytes:
    """``message`` with an ``X-Hashcash`` stamp (20 bits) for each recipient, minted off the reactor thread:
    a screener that honours them lets first-contact mail through."""
    from twisted.internet.threads import deferToThread

    if recipients is None:
        fields = header_fields(message)
        recipients = [a for _, a in getaddresses([v for n, v in fields if n in ("to", "cc", "bcc")]) if a]
    targets = list(dict.fromkeys(r.strip().lower() for r in recipients))
    if not 0 < len(targets) <= MAX_STAMPED_RECIPIENTS:
        raise ApiError("invalid_request", f"hashcash stamps go to 1 to {MAX_STAMPED_RECIPIENTS} recipients")
    now = datetime.datetime.now(datetime.UTC)
    headers = b""
    for target in targets:
        try:
            stamp = await deferToThread(hashcash.mint, target, bits=20, now=now)
        except ValueError:
            raise ApiError("invalid_request", "a recipient address cannot carry a hashcash stamp") from None
        headers += f"X-Hashcash: {stamp}\r\n".encode("ascii")
    return headers + message


__all__ = ["SendRoutes", "submitted_json"]
