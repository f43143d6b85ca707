"""``POST /api/learn/spam`` and ``/api/learn/ham``: a message a user marked, handed to the spam filter to learn from.

The client sends the decrypted original only when the user asks ("this is spam" / "not spam") and
agrees to it: the one moment besides its arrival that the server holds the plaintext. It goes to
rspamd (``delivery/rspamd.py``) from memory (a body too large for memory waits in the encrypted
spool) and nothing of it is kept or logged. Without ``--rspamd`` there is nothing to train: 503.
"""

from __future__ import annotations

from typing import Any

from mailiverse.delivery.rspamd import RspamdClient, SpamFilterUnavailable
from mailiverse.logs import Logger
from mailiverse.web.body import check_body_size
from mailiverse.web.errors import ApiError, json_response
from mailiverse.web.routing import router
from mailiverse.web.session import RouteBase

log = Logger()

#: The media type of the body: a whole message (not CORS-safelisted, so a browser preflights it cross-site).
MESSAGE_TYPE = b"message/rfc822"


class SpamRoutes(RouteBase):
    """Training the spam filter from the clients' buttons."""

    spam_filter: RspamdClient | None

    @router.route("/api/learn/<kind>", methods=["POST"])
    async def learn(self, request: Any, kind: str) -> bytes:
        _record, user = await self.user_of(request)
        if kind not in ("spam", "ham"):
            raise ApiError("not_found", "learn spam or ham: /api/learn/spam or /api/learn/ham", 404)
        content_type = (request.getHeader(b"content-type") or b"").split(b";", 1)[0].strip().lower()
        if content_type != MESSAGE_TYPE:
            raise ApiError("unsupported_media_type", "send the message as message/rfc822", 415)
        check_body_size(request, self.max_message_size)
        if self.spam_filter is None:
            raise ApiError("no_spam_filter", "this appliance has no spam filter to train (no --rspamd)", 503)
        raw = request.content.read(self.max_message_size + 1) if request.content is not None else b""
        if not raw.strip():
            raise ApiError("invalid_request", "the body is the message to learn from")
        try:
            outcome = await self.spam_filter.learn(raw, kind)
        except SpamFilterUnavailable as error:
            log.warn("spam filter: learning {kind} failed ({why})", kind=kind, why=str(error))
            raise ApiError("spam_filter_failed", "the spam filter could not learn from the message", 502) from None
        finally:
            del raw
        log.info("spam filter: a user's message learned as {kind} ({result})", kind=kind, result=outcome.reason or "ok")
        body: dict[str, Any] = {"learned": outcome.learned}
        if outcome.reason:
            body["reason"] = outcome.reason
        return json_response(request, body)


__all__ = ["SpamRoutes"]
