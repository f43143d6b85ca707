"""``/api/screener``: the screener for first-time senders of the logged-in account (``store/screener.py``).

``GET`` and ``PUT /api/screener`` read and set whether it is on; ``POST /api/screener/senders`` approves,
blocks or forgets a sender, by address (kept only as a keyed hash: the list cannot be read back, only
counted). Moving a screened message to the inbox is ``POST /api/move`` (``Mail/Screener`` -> ``Mail/In``).
Accounts read by original Mailiverse clients (envelope v1) cannot turn it on: those clients never list
``Mail/Screener``.
"""

from __future__ import annotations

from typing import Any

from mailiverse.store.aliases import AddressHasher
from mailiverse.store.screener import counts_txn, screener_enabled_txn, set_screener_txn, set_sender_txn
from mailiverse.web.body import read_json
from mailiverse.web.errors import ApiError, json_response
from mailiverse.web.routing import router
from mailiverse.web.session import RouteBase


class ScreenerRoutes(RouteBase):
    """The account's screener: on or off, and its approved and blocked senders."""

    def _hasher(self) -> AddressHasher:
        if self.alias_settings is None:
            raise ApiError("screener_unavailable", "this appliance keeps no address key", 503)
        return self.alias_settings.hasher

    async def _state(self, user_id: int) -> dict[str, Any]:
        enabled = await self.database.run(screener_enabled_txn, user_id)
        counts = await self.homes.run_for(user_id, counts_txn, user_id)
        return {"enabled": enabled, **counts}

    @router.route("/api/screener", methods=["GET"])
    async def screener(self, request: Any) -> bytes:
        _record, user = await self.user_of(request)
        return json_response(request, await self._state(user.id))

    @router.route("/api/screener", methods=["PUT"])
    async def set_screener(self, request: Any) -> bytes:
        _record, user = await self.user_of(request)
        self._hasher()
        body = read_json(request)
        if set(body) != {"enabled"} or not isinstance(body["enabled"], bool):
            raise ApiError("invalid_request", 'give {"enabled": true|false}')
        if body["enabled"] and user.envelope_format == "v1":
            raise ApiError(
                "screener_unavailable", "accounts read by original Mailiverse clients cannot use the screener", 409
            )
        await self.database.transact(set_screener_txn, user.id, body["enabled"])
        return json_response(request, await self._state(user.id))

    @router.route("/api/screener/senders", methods=["POST"])
    async def set_sender(self, request: Any) -> bytes:
        _record, user = await self.user_of(request)
        hasher = self._hasher()
        body = read_json(request)
        address, verdict = body.get("address"), body.get("verdict")
        if set(body) != {"address", "verdict"} or verdict not in ("approved", "blocked", None):
            raise ApiError("invalid_request", 'give {"address": ..., "verdict": "approved" | "blocked" | null}')
        if not isinstance(address, str) or not 3 <= len(address) <= 254 or address.count("@") != 1:
            raise ApiError("invalid_request", "address is one email address")
        await self.homes.transact_for(user.id, set_sender_txn, user.id, hasher.sender(address.strip()), verdict)
        return json_response(request, {"address": address.strip().lower(), "verdict": verdict})


__all__ = ["ScreenerRoutes"]
