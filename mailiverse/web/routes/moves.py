"""``POST /api/move``: a message's objects moved between the inbox and the spam folder (``store/moves.py``)."""

from __future__ import annotations

from typing import Any

from mailiverse.store.errors import VersionConflict
from mailiverse.store.moves import MAX_MOVES, move_objects_txn
from mailiverse.web.body import read_json
from mailiverse.web.errors import ApiError, json_response
from mailiverse.web.routing import router
from mailiverse.web.session import RouteBase


class MoveRoutes(RouteBase):
    """Renames within the user's own store, all in one transaction; the ciphertext is not touched."""

    @router.route("/api/move", methods=["POST"])
    async def move(self, request: Any) -> bytes:
        _record, user = await self.user_of(request)
        body = read_json(request)
        moves = body.get("moves")
        if set(body) != {"moves"} or not isinstance(moves, list) or not 0 < len(moves) <= MAX_MOVES:
            raise ApiError("invalid_request", f'give {{"moves": [{{"from", "to"}}, ...]}} with 1 to {MAX_MOVES} moves')
        pairs = []
        for move in moves:
            if not isinstance(move, dict) or set(move) != {"from", "to"}:
                raise ApiError("invalid_request", 'each move is {"from": PATH, "to": PATH}')
            source, target = move["from"], move["to"]
            if not isinstance(source, str) or not isinstance(target, str):
                raise ApiError("invalid_request", "a move's paths are strings")
            pairs.append((source, target))
        try:
            moved = await self.homes.transact_for(user.id, move_objects_txn, user.id, pairs)
        except VersionConflict:
            raise ApiError("conflict", "an object already exists where one would move", 409) from None
        return json_response(request, {"moved": moved})


__all__ = ["MoveRoutes"]
