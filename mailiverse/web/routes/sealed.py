"""``POST /api/send/sealed``: a message sealed on the sender's device, handed to the submission service (docs/e2e.md).

Only the request's shape is checked here (members, sizes, the key base, base64); whom the envelopes are for,
quotas, screeners and where each goes are the submission service's rules.
"""

from __future__ import annotations

import time
from typing import Any

from mailiverse.contracts import SealedObjects
from mailiverse.mime.carrier import valid_key_base, valid_key_id
from mailiverse.submission.sealed import MAX_STAMPS, SealedMessage
from mailiverse.web.body import body_limit_for, read_json
from mailiverse.web.errors import ApiError, json_response
from mailiverse.web.routes.send import submitted_json
from mailiverse.web.routing import router
from mailiverse.web.session import RouteBase
from mailiverse.web.validation import base64_bytes, optional_text

#: How far a client's clock may be from ours when it names a message (its key base starts with the time).
KEY_BASE_SKEW_MS = 24 * 3600 * 1000
MAX_ENVELOPES = 100
_MAX_STAMP_CHARS = 512


class SealedSendRoutes(RouteBase):
    """Sending what the sender's device sealed."""

    @router.route("/api/send/sealed", methods=["POST"])
    async def send_sealed(self, request: Any) -> bytes:
        _record, user = await self.user_of(request)
        body = read_json(request, body_limit_for(self.max_message_size)(b"/api/send/sealed"))
        unknown = set(body) - {"from", "key_base", "envelopes", "sent", "stamps"}
        if unknown:
            raise ApiError("invalid_request", f"unknown member {sorted(unknown)[0]!r}")
        key_base = body.get("key_base")
        if not valid_key_base(key_base):
            raise ApiError("invalid_request", "key_base is <milliseconds>_<digits>")
        assert isinstance(key_base, str)
        if abs(int(key_base.partition("_")[0]) - time.time_ns() // 10**6) > KEY_BASE_SKEW_MS:
            raise ApiError("invalid_request", "key_base must start with the time now (in milliseconds)")
        envelopes, organisation = self._envelopes(body.get("envelopes"))
        sent, sent_key_base = None, key_base
        if body.get("sent") is not None:
            # The Sent copy may have a key base of its own, so a message to oneself has two distinct names.
            given = dict(body["sent"]) if isinstance(body["sent"], dict) else body["sent"]
            if isinstance(given, dict) and "key_base" in given:
                sent_key_base = given.pop("key_base")
                if not valid_key_base(sent_key_base) or sent_key_base == key_base:
                    raise ApiError("invalid_request", "the Sent copy's key_base is <milliseconds>_<digits>, its own")
            sent = self._objects(given, "sent")
        message = SealedMessage(
            key_base=key_base,
            envelopes=tuple(envelopes),
            organisation=tuple(organisation),
            sent=sent,
            sent_key_base=str(sent_key_base),
            from_address=optional_text(body, "from", 254),
            stamps=_stamps(body.get("stamps", [])),
        )
        result = await self.submission.submit_sealed(self.submission.submitter(user.name, user), message)
        return json_response(request, {**submitted_json(result), "key_base": key_base})

    def _envelopes(self, value: object) -> tuple[list[tuple[str, SealedObjects]], list[tuple[str, SealedObjects]]]:
        if not isinstance(value, list) or not 0 < len(value) <= MAX_ENVELOPES + 16:
            raise ApiError("invalid_request", f"envelopes is a list of 1 to {MAX_ENVELOPES} envelopes")
        personal: list[tuple[str, SealedObjects]] = []
        organisation: list[tuple[str, SealedObjects]] = []
        for item in value:
            if not isinstance(item, dict):
                raise ApiError("invalid_request", "each envelope is an object")
            if "to" in item and "organisation" not in item:
                to = item.get("to")
                if not isinstance(to, str) or not 0 < len(to) <= 254:
                    raise ApiError("invalid_request", "an envelope's to is an address")
                personal.append((to, self._objects(item, "envelope", extra="to")))
            elif "organisation" in item and "to" not in item:
                domain = item.get("organisation")
                if not isinstance(domain, str) or not 0 < len(domain) <= 253:
                    raise ApiError("invalid_request", "an organisation envelope names its domain")
                organisation.append((domain.lower(), self._objects(item, "envelope", extra="organisation")))
            else:
                raise ApiError("invalid_request", "an envelope has either to or organisation")
        if not 0 < len(personal) <= MAX_ENVELOPES:
            raise ApiError("invalid_request", f"give 1 to {MAX_ENVELOPES} recipients' envelopes")
        if len({domain for domain, _ in organisation}) != len(organisation):
            raise ApiError("invalid_request", "one organisation envelope per domain")
        return personal, organisation

    def _objects(self, item: object, what: str, extra: str | None = None) -> SealedObjects:
        allowed = {"key_id", "original", "twin"} | ({extra} if extra else set())
        if not isinstance(item, dict) or set(item) != allowed:
            raise ApiError("invalid_request", f"{what} is {{{', '.join(sorted(allowed))}}}")
        if not valid_key_id(item["key_id"]):
            raise ApiError("invalid_request", f"the {what}'s key_id is malformed")
        limit = self.max_message_size + 64 * 1024  # the envelope's own bytes around a compressed message
        original, twin = base64_bytes(item, "original", limit), base64_bytes(item, "twin", limit)
        if not original or not twin:
            raise ApiError("invalid_request", f"the {what}'s objects are empty")
        return SealedObjects(str(item["key_id"]), original, twin)


def _stamps(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > MAX_STAMPS:
        raise ApiError("invalid_request", f"stamps is a list of at most {MAX_STAMPS} Hashcash stamps")
    for stamp in value:
        if not isinstance(stamp, str) or not 0 < len(stamp) <= _MAX_STAMP_CHARS or not stamp.isprintable():
            raise ApiError("invalid_request", "a stamp is a short printable line")
    return tuple(value)


__all__ = ["SealedSendRoutes"]
