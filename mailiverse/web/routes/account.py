"""The logged-in account: ``GET /api/account``, password change, deletion."""

from __future__ import annotations

import hashlib
from typing import Any

from mailiverse.accounts.kdf import stored_kdf
from mailiverse.accounts.service import NewVerifier
from mailiverse.auth.devices import clear_device_cookie
from mailiverse.auth.sessions import clear_session_cookie
from mailiverse.crypto.keys import load_public_key
from mailiverse.web.body import ACCOUNT_JSON_BYTES, read_json
from mailiverse.web.errors import json_response
from mailiverse.web.routing import router
from mailiverse.web.session import RouteBase
from mailiverse.web.validation import b64, base64_bytes, client_ip, device_token, field, optional_int, proof, text


class AccountRoutes(RouteBase):
    """What the account holds (key, key block, addresses) and the changes that need a fresh proof."""

    @router.route("/api/account", methods=["GET"])
    async def account(self, request: Any) -> bytes:
        _record, user = await self.user_of(request)
        key = load_public_key(user.public_key)
        return json_response(
            request,
            {
                "user": user.name,
                "addresses": self.addresses(user),
                "format": user.envelope_format,
                "public_key": b64(user.public_key),
                "fingerprint": hashlib.sha256(user.public_key).hexdigest(),
                "bits": key.key_size,
                "key_block": b64(user.key_block) if user.key_block is not None else None,
                "key_block_version": user.key_block_version,
                "created_ms": user.created_ms,
                "kdf": stored_kdf(user).to_json(),
            },
        )

    @router.route("/api/account/password", methods=["POST"])
    async def change_password(self, request: Any) -> bytes:
        record, _user = await self.user_of(request)
        body = read_json(request, ACCOUNT_JSON_BYTES)
        new = NewVerifier(
            srp_salt=base64_bytes(body, "salt", 64),
            srp_verifier=base64_bytes(body, "verifier", 512),
            srp_group=text(body, "group", 64),
            key_block=base64_bytes(body, "key_block", 96 * 1024),
            kdf=field(body, "kdf", optional=True),
        )
        version = optional_int(body, "key_block_version")
        result = await self.accounts.change_password(
            record.username,
            proof(body.get("proof")),
            new,
            client_ip(request),
            if_key_block_version=version,
            device_token=device_token(request, body),
        )
        fields = self.session_fields(request, result.session.token, result.session.csrf_token)
        fields.update(self.device_fields(request, result.device_token))
        return json_response(
            request,
            {
                "user": result.user.name,
                "HAMK": b64(result.hamk),
                "key_block_version": result.user.key_block_version,
                **fields,
            },
        )

    @router.route("/api/account", methods=["DELETE"])
    async def delete_account(self, request: Any) -> bytes:
        record, _user = await self.user_of(request)
        body = read_json(request)
        hamk = await self.accounts.delete_account(
            record.username, proof(body.get("proof")), client_ip(request), device_token(request, body)
        )
        request.responseHeaders.addRawHeader(b"Set-Cookie", clear_session_cookie().encode("ascii"))
        request.responseHeaders.addRawHeader(b"Set-Cookie", clear_device_cookie().encode("ascii"))
        return json_response(request, {"status": "deleted", "HAMK": b64(hamk)})


__all__ = ["AccountRoutes"]
