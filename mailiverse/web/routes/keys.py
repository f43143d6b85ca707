"""Public keys of local users: ``GET /api/keys/{address}`` (for a logged-in user sealing to them)."""

from __future__ import annotations

import hashlib
from typing import Any

from mailiverse.accounts.errors import AccountError
from mailiverse.accounts.service import check_username
from mailiverse.crypto.keys import load_public_key
from mailiverse.store.users import User, get_user_txn
from mailiverse.web.errors import ApiError, json_response
from mailiverse.web.routing import router
from mailiverse.web.session import RouteBase
from mailiverse.web.validation import b64


class KeyRoutes(RouteBase):
    """The key directory of this appliance's users."""

    @router.route("/api/keys/<address>", methods=["GET"])
    async def public_key(self, request: Any, address: str) -> bytes:
        await self.user_of(request)
        local, at, domain = address.rpartition("@")
        found: User | None = None
        if at and domain.lower() in self.domains:
            try:
                name: str | None = check_username(local)
            except AccountError:
                name = None
            if name is not None:
                found = await self.database.run(get_user_txn, name)
        if found is None or found.disabled:
            raise ApiError("not_found", "no local user has that address", 404)
        key = load_public_key(found.public_key)
        return json_response(
            request,
            {
                "address": f"{found.name}@{domain.lower()}",
                "user": found.name,
                "public_key": b64(found.public_key),
                "fingerprint": hashlib.sha256(found.public_key).hexdigest(),
                "bits": key.key_size,
                "format": found.envelope_format,
            },
        )


__all__ = ["KeyRoutes"]
