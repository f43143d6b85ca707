"""The account's second factor: ``/api/account/second-factor``, ``/api/account/passkeys/*`` and
``/api/account/recovery-codes`` (docs/passkeys.md). The login's second step is ``/api/login/second-factor``
(routes/auth.py); the rules are ``accounts/secondfactor.py``'s."""

from __future__ import annotations

import base64
import binascii
import unicodedata
from typing import TYPE_CHECKING, Any

from mailiverse.web.body import read_json
from mailiverse.web.errors import ApiError, json_response
from mailiverse.web.relyingparty import relying_party
from mailiverse.web.routing import router
from mailiverse.web.session import RouteBase
from mailiverse.web.validation import field, optional_text, text

if TYPE_CHECKING:
    from mailiverse.accounts.secondfactor import RelyingParty
    from mailiverse.store.secondfactor import Passkey, RecoveryCodeState

# The second factor's modules load at the first use of one of these routes or of a login needing it, not at start-up:
# an idle appliance does not carry them (docs/appliance.md, Memory).

#: A passkey registered without a name is called this.
DEFAULT_NAME = "Passkey"


def b64url(data: bytes) -> str:
    """URL-safe base64 without padding, as WebAuthn writes credential ids."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def credential_id_of(text_id: str) -> bytes:
    """The credential id a path segment names (URL-safe base64), or 404: no passkey has a malformed id."""
    from mailiverse.store.secondfactor import MAX_CREDENTIAL_ID_BYTES

    if not 0 < len(text_id) <= (MAX_CREDENTIAL_ID_BYTES * 4 + 2) // 3 or not text_id.isascii():
        raise ApiError("not_found", "no such passkey", 404)
    try:
        raw = base64.urlsafe_b64decode(text_id + "=" * (-len(text_id) % 4))
    except (binascii.Error, ValueError):
        raise ApiError("not_found", "no such passkey", 404) from None
    if b64url(raw) != text_id.rstrip("="):
        raise ApiError("not_found", "no such passkey", 404)
    return raw


def passkey_name(body: dict[str, Any]) -> str:
    """The name given to a new passkey: printable text of 1 to MAX_NAME_LENGTH characters, or the default."""
    from mailiverse.store.secondfactor import MAX_NAME_LENGTH

    name = " ".join((optional_text(body, "name", MAX_NAME_LENGTH) or "").split())
    if any(unicodedata.category(ch).startswith("C") for ch in name):
        raise ApiError("invalid_request", "the field 'name' must be printable text")
    return name or DEFAULT_NAME


def passkey_json(passkey: Passkey) -> dict[str, Any]:
    return {
        "id": b64url(passkey.credential_id),
        "name": passkey.name,
        "created_ms": passkey.created_ms,
        "last_used_ms": passkey.last_used_ms,
    }


def recovery_json(state: RecoveryCodeState) -> dict[str, Any]:
    return {"remaining": state.remaining, "total": state.total, "created_ms": state.created_ms}


class PasskeyRoutes(RouteBase):
    """Register, list and remove passkeys; see and renew recovery codes (a live session, CSRF on writes)."""

    def _relying_party(self, request: Any) -> RelyingParty:
        party = relying_party(request, self.hostname, self.domains)
        if party is None:
            raise ApiError(
                "passkeys_unavailable",
                f"passkeys work only at the appliance's name: open https://{self.hostname}/ (not an address)",
                409,
            )
        return party

    @router.route("/api/account/second-factor", methods=["GET"])
    async def second_factor(self, request: Any) -> bytes:
        _record, user = await self.user_of(request)
        status = await self.accounts.second_factors.status(user.id)
        party = relying_party(request, self.hostname, self.domains)
        return json_response(
            request,
            {
                "enabled": status.enabled,
                "passkeys": [passkey_json(p) for p in status.passkeys],
                "recovery_codes": recovery_json(status.recovery),
                "rp_id": party.id if party is not None else None,
            },
        )

    @router.route("/api/account/passkeys/register/start", methods=["POST"])
    async def passkey_register_start(self, request: Any) -> bytes:
        _record, user = await self.user_of(request)
        read_json(request)
        party = self._relying_party(request)
        addresses = self.addresses(user)
        registration = await self.accounts.second_factors.begin_registration(
            user, party, addresses[0] if addresses else user.name
        )
        return json_response(request, {"handle": registration.handle, "options": registration.options})

    @router.route("/api/account/passkeys/register/finish", methods=["POST"])
    async def passkey_register_finish(self, request: Any) -> bytes:
        _record, user = await self.user_of(request)
        body = read_json(request)
        credential = field(body, "credential")
        if not isinstance(credential, dict):
            raise ApiError("invalid_request", "the field 'credential' must be the passkey's credential object")
        handle = text(body, "handle", 64)
        name = passkey_name(body)
        party = self._relying_party(request)
        registered = await self.accounts.second_factors.finish_registration(user, handle, credential, name, party)
        answer: dict[str, Any] = {"passkey": passkey_json(registered.passkey)}
        if registered.recovery_codes:
            answer["recovery_codes"] = list(registered.recovery_codes)
        return json_response(request, answer, 201)

    @router.route("/api/account/passkeys/<passkey_id>", methods=["DELETE"])
    async def passkey_remove(self, request: Any, passkey_id: str) -> bytes:
        _record, user = await self.user_of(request)
        credential_id = credential_id_of(passkey_id)
        factors = self.accounts.second_factors
        if not await factors.remove_passkey(user.id, credential_id):
            raise ApiError("not_found", "no such passkey", 404)
        return json_response(request, {"status": "removed", "enabled": await factors.enabled(user.id)})

    @router.route("/api/account/recovery-codes", methods=["POST"])
    async def recovery_codes(self, request: Any) -> bytes:
        _record, user = await self.user_of(request)
        read_json(request)
        codes = await self.accounts.second_factors.regenerate_recovery_codes(user.id)
        return json_response(request, {"recovery_codes": codes})


__all__ = ["PasskeyRoutes"]
