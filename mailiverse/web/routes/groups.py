"""Group keys over HTTP (docs/keys.md, "Groups"); every route is for a logged-in member:

- ``POST /api/groups`` ``{name, record, wrapped}``: a new group, its key's signed record, the key wrapped to you;
- ``GET /api/groups``: your groups; ``GET /api/groups/{name}``: its key, members and the keys wrapped to you;
- ``POST /api/groups/{name}/members`` ``{user, key_id, wrapped}``: add a member (the key wrapped to them);
- ``POST /api/groups/{name}/rekey`` ``{records, wrapped: {user: ...}, removed}``: a new group key for those who
  remain (how a member is removed);
- ``GET /api/groups/{name}/store`` and ``/store/{path}``, ``POST /api/groups/{name}/batch``: the group's mail, read
  like your own store.

An unknown group and one you are not an active member of get the same ``404``.
"""

from __future__ import annotations

from typing import Any

from mailiverse.accounts.directory import DirectoryError, parse_records
from mailiverse.accounts.groups import GroupView
from mailiverse.keylog.records import b64, fingerprint
from mailiverse.store.aliases import find_alias_txn
from mailiverse.web.body import ACCOUNT_JSON_BYTES, read_json
from mailiverse.web.errors import ApiError, json_response
from mailiverse.web.routes.store import StoreRoutes
from mailiverse.web.routing import router
from mailiverse.web.validation import base64_bytes, text

_MAX_WRAPPED = 16 * 1024


def _view_json(view: GroupView, addresses: list[str]) -> dict[str, Any]:
    group = view.group
    return {
        "name": group.name,
        "addresses": addresses,
        "kind": group.kind,
        "key_id": group.key_id,
        "public_key": b64(group.public_key),
        "fingerprint": fingerprint(group.public_key),
        "members": view.members,
        "keys": [{"key_id": key_id, "wrapped": b64(wrapped)} for key_id, wrapped in view.wrapped],
    }


class GroupRoutes(StoreRoutes):
    """Groups whose private key the server holds only wrapped to their members."""

    def _group_json(self, view: GroupView) -> dict[str, Any]:
        return _view_json(view, list(self.submission.addresses_of(view.group.name)))

    @router.route("/api/groups", methods=["POST"])
    async def create_group(self, request: Any) -> bytes:
        _record, user = await self.user_of(request)
        body = read_json(request, ACCOUNT_JSON_BYTES)
        name = text(body, "name", 64)
        (record,) = parse_records([body.get("record")])
        wrapped = base64_bytes(body, "wrapped", _MAX_WRAPPED)
        settings = self.alias_settings
        if settings is not None:
            if await self.database.run(find_alias_txn, settings.hasher.alias(name.lower())) is not None:
                raise ApiError("name_taken", "that name is taken", 409)
        view = await self.groups.create(user, name, record, wrapped)
        return json_response(request, self._group_json(view), 201)

    @router.route("/api/groups", methods=["GET"])
    async def list_groups(self, request: Any) -> bytes:
        _record, user = await self.user_of(request)
        views = await self.groups.of_member(user)
        return json_response(request, {"groups": [self._group_json(view) for view in views]})

    @router.route("/api/groups/<name>", methods=["GET"])
    async def get_group(self, request: Any, name: str) -> bytes:
        _record, user = await self.user_of(request)
        return json_response(request, self._group_json(await self.groups.view(user, name)))

    @router.route("/api/groups/<name>/members", methods=["POST"])
    async def add_member(self, request: Any, name: str) -> bytes:
        _record, user = await self.user_of(request)
        body = read_json(request, ACCOUNT_JSON_BYTES)
        member = text(body, "user", 320).partition("@")[0]
        view = await self.groups.add(
            user, name, member, text(body, "key_id", 36), base64_bytes(body, "wrapped", _MAX_WRAPPED)
        )
        return json_response(request, self._group_json(view))

    @router.route("/api/groups/<name>/rekey", methods=["POST"])
    async def rekey_group(self, request: Any, name: str) -> bytes:
        _record, user = await self.user_of(request)
        body = read_json(request, ACCOUNT_JSON_BYTES)
        records = parse_records(body.get("records"))
        given = body.get("wrapped")
        removed = body.get("removed", [])
        if not isinstance(given, dict) or not isinstance(removed, list) or len(given) > 200 or len(removed) > 200:
            raise ApiError("invalid_request", "wrapped is an object of members, removed a list of names")
        if not all(isinstance(r, str) for r in removed):
            raise ApiError("invalid_request", "removed is a list of names")
        wrapped = {str(member).partition("@")[0].lower(): base64_bytes(given, member, _MAX_WRAPPED) for member in given}
        view = await self.groups.rekey(user, name, records, wrapped, [r.partition("@")[0] for r in removed])
        return json_response(request, self._group_json(view))

    @router.route("/api/groups/<name>/store", methods=["GET"])
    async def list_group_store(self, request: Any, name: str) -> bytes:
        _record, user = await self.user_of(request)
        account = await self.groups.store_account(user, name)
        return await self.list_objects_of(request, account.id)

    @router.route("/api/groups/<name>/batch", methods=["POST"])
    async def group_batch(self, request: Any, name: str) -> bytes | None:
        _record, user = await self.user_of(request)
        account = await self.groups.store_account(user, name)
        return await self.send_batch_of(request, account.id)

    @router.route("/api/groups/<name>/store/<path:path>", methods=["GET"])
    async def get_group_object(self, request: Any, name: str, path: str) -> bytes | None:
        _record, user = await self.user_of(request)
        account = await self.groups.store_account(user, name)
        return await self.send_object_of(request, account.id, path)


__all__ = ["DirectoryError", "GroupRoutes"]
