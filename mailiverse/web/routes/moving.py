"""Moving house over HTTP (docs/moving.md; the rules are ``accounts.moving``):

- the old appliance: ``GET /api/account/move`` (the moved state and the mail's marks), ``POST /api/account/move``
  (switch to moved on a signed moved record), ``POST /api/account/move/copied`` (received mail the client
  copied: never forwarded), ``POST /api/account/move/finish`` (delete the account's data, when the user asks);
- the new appliance: ``POST /api/account/brought-keys`` (keys the account brought, and the key block holding
  them), ``GET /api/account/brought-keys``, and ``POST /api/store/{path}``: an object brought from the old
  appliance, any path (``Mail/`` too), stored only where there is none (or the same bytes already are);
- both: ``GET /api/account/digests`` (each object's size and SHA-256, how the client verifies the copy).
"""

from __future__ import annotations

import hashlib
import time
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection

if TYPE_CHECKING:
    from mailiverse.accounts.moving import MovingService

from mailiverse.store import objects
from mailiverse.store.objects import ObjectInfo, validate_path, validate_prefix
from mailiverse.web.body import ACCOUNT_JSON_BYTES, MAX_OBJECT_BYTES, check_body_size, read_json
from mailiverse.web.errors import ApiError, json_response
from mailiverse.web.routing import router
from mailiverse.web.session import RouteBase
from mailiverse.web.validation import b64, base64_bytes, field, object_json, optional_int, query_arg

_UNCHANGED = "unchanged"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _bring_object_txn(
    conn: Connection, user_id: int, path: str, data: bytes, modified_ms: int, default_quota: int
) -> ObjectInfo | str:
    """Store ``data`` at ``path`` unless an object is there: the same bytes answer ``_UNCHANGED``, others refuse."""
    present = objects.get_object_info_txn(conn, user_id, path)
    if present is not None:
        stored = hashlib.sha256(objects.read_object_txn(conn, user_id, path)).digest()
        if stored == hashlib.sha256(data).digest():
            return _UNCHANGED
        raise ApiError("conflict", "another object is at this path: not replaced", 409)
    return objects.put_object_txn(
        conn,
        user_id,
        path,
        data,
        if_absent=True,
        now_ms=modified_ms,
        max_size=MAX_OBJECT_BYTES,
        default_quota=default_quota,
    )


class MovingRoutes(RouteBase):
    """Both ends of a move: the old appliance switches and forgets, the new one takes keys and objects."""

    _moving_service: MovingService | None = None

    @property
    def moving(self) -> MovingService:
        # Imported on first use, as below: moves are rare, and idle memory counts (docs/appliance.md, Memory).
        from mailiverse.accounts.moving import MovingService

        if self._moving_service is None:
            self._moving_service = MovingService(
                self.database, self.key_directory.log, self.submission.is_local, homes=self.homes
            )
        return self._moving_service

    # -- the old appliance ---------------------------------------------------------------------------

    @router.route("/api/account/move", methods=["GET"])
    async def move_status(self, request: Any) -> bytes:
        _record, user = await self.user_of(request)
        status = await self.moving.status(user)
        state = status.state
        return json_response(
            request,
            {
                "moved": state is not None,
                "moved_to": None if state is None else state.moved_to,
                "moved_ms": None if state is None else state.moved_ms,
                "forward_until_ms": None if state is None else state.forward_until_ms,
                "leaf_index": None if state is None else state.leaf_index,
                "mail": status.marks,
                "pending": status.pending,
            },
        )

    @router.route("/api/account/move", methods=["POST"])
    async def move_house(self, request: Any) -> bytes:
        _record, user = await self.user_of(request)
        body = read_json(request, ACCOUNT_JSON_BYTES)
        if set(body) - {"to", "grace_days", "record"}:
            raise ApiError("invalid_request", "a move is {to, grace_days, record}")
        grace_days = body.get("grace_days", 30)
        if isinstance(grace_days, int) and not isinstance(grace_days, bool) and grace_days > 0:
            if self.submission.outbound is None:
                raise ApiError(
                    "remote_delivery_disabled",
                    "this appliance sends no mail to other domains, so it cannot forward: use grace_days 0",
                    422,
                )
        state, head = await self.moving.move(
            user, self.addresses(user), field(body, "to"), grace_days, field(body, "record")
        )
        return json_response(
            request,
            {
                "moved_to": state.moved_to,
                "moved_ms": state.moved_ms,
                "forward_until_ms": state.forward_until_ms,
                "leaf_index": state.leaf_index,
                "sth": head.to_json(),
            },
            201,
        )

    @router.route("/api/account/move/copied", methods=["POST"])
    async def move_copied(self, request: Any) -> bytes:
        _record, user = await self.user_of(request)
        body = read_json(request, ACCOUNT_JSON_BYTES)
        marked = await self.moving.mark_copied(user, body.get("key_bases"))
        return json_response(request, {"marked": marked})

    @router.route("/api/account/move/finish", methods=["POST"])
    async def move_finish(self, request: Any) -> bytes:
        _record, user = await self.user_of(request)
        body = read_json(request)
        if body != {"delete": True}:
            raise ApiError("invalid_request", 'send {"delete": true}: every object of the account is deleted')
        deleted = await self.moving.finish(user)
        return json_response(request, {"deleted": deleted})

    # -- both ends -----------------------------------------------------------------------------------

    @router.route("/api/account/digests", methods=["GET"])
    async def digests(self, request: Any) -> bytes:
        _record, user = await self.user_of(request)
        prefix = validate_prefix(query_arg(request, b"prefix") or "")
        after = query_arg(request, b"after")
        if after is not None:
            validate_prefix(after)
        from mailiverse.store.moving import MAX_DIGESTS

        limit_text = query_arg(request, b"limit") or str(MAX_DIGESTS)
        if not limit_text.isascii() or not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_DIGESTS:
            raise ApiError("invalid_request", f"limit is 1 to {MAX_DIGESTS}")
        limit = int(limit_text)
        page = await self.moving.digests(user, prefix, after, limit)
        following = page[-1].path if len(page) == limit else None
        return json_response(
            request,
            {
                "objects": [
                    {"path": d.path, "size": d.size, "sha256": d.sha256.hex(), "modified_ms": d.modified_ms}
                    for d in page
                ],
                "next": following,
            },
        )

    # -- the new appliance ---------------------------------------------------------------------------

    @router.route("/api/account/brought-keys", methods=["POST"])
    async def bring_keys(self, request: Any) -> bytes:
        _record, user = await self.user_of(request)
        body = read_json(request, ACCOUNT_JSON_BYTES)
        if set(body) - {"address", "keys", "key_block", "key_block_version", "signature"}:
            raise ApiError(
                "invalid_request", "brought keys are {address, keys, key_block, key_block_version, signature}"
            )
        key_block = base64_bytes(body, "key_block", 96 * 1024) if body.get("key_block") is not None else None
        signature = base64_bytes(body, "signature", 1024)
        added, user = await self.moving.bring_keys(
            user,
            self.addresses(user),
            body.get("address"),
            body.get("keys"),
            key_block,
            optional_int(body, "key_block_version"),
            signature,
        )
        return json_response(request, {"added": added, "key_block_version": user.key_block_version}, 201)

    @router.route("/api/account/brought-keys", methods=["GET"])
    async def brought_keys(self, request: Any) -> bytes:
        _record, user = await self.user_of(request)
        from mailiverse.store.moving import brought_keys_of_txn

        keys = await self.database.run(brought_keys_of_txn, user.id)
        return json_response(
            request,
            {"keys": [{"key_id": k.key_id, "public_key": b64(k.public_key), "address": k.address} for k in keys]},
        )

    @router.route("/api/store/<path:path>", methods=["POST"])
    async def bring_object(self, request: Any, path: str) -> bytes:
        _record, user = await self.user_of(request)
        validate_path(path)
        check_body_size(request, MAX_OBJECT_BYTES)
        now = _now_ms()
        stamp = query_arg(request, b"modified_ms")
        modified_ms = now
        if stamp is not None:
            if not stamp.isascii() or not stamp.isdigit() or len(stamp) > 15:
                raise ApiError("invalid_request", "modified_ms is milliseconds since the epoch")
            modified_ms = min(int(stamp), now)
        data = request.content.read() if request.content is not None else b""
        outcome = await self.homes.transact_for(
            user.id, _bring_object_txn, user.id, path, data, modified_ms, self.default_quota
        )
        if outcome == _UNCHANGED:
            return json_response(request, {"path": path, "unchanged": True})
        assert isinstance(outcome, ObjectInfo)
        return json_response(request, object_json(outcome), 201)


__all__ = ["MovingRoutes"]
