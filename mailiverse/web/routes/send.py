"""``POST /api/send``: a structured or raw message from the logged-in user, handed to the submission service."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from mailiverse.submission import Composed, compose
from mailiverse.web.body import body_limit_for, read_json
from mailiverse.web.errors import json_response
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
        result = await self.submission.submit(self.submission.submitter(user.name, user), message, recipients)
        return json_response(
            request,
            {
                "from": result.mail_from,
                "local": list(result.local),
                "remote": list(result.remote),
                "queue_id": result.queue_id,
                "sent": result.sent_path,
            },
        )


__all__ = ["SendRoutes"]
