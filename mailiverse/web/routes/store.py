"""The user's object store: ``GET /api/store`` (listing), and ``GET``/``PUT``/``DELETE /api/store/{path}``."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from mailiverse.store import objects
from mailiverse.store.errors import VersionConflict
from mailiverse.store.objects import MAX_LIST_LIMIT, NewestCursor, validate_path, validate_prefix
from mailiverse.store.reading import open_object
from mailiverse.web.body import MAX_OBJECT_BYTES, check_body_size, read_json
from mailiverse.web.errors import ApiError, json_response
from mailiverse.web.routing import router
from mailiverse.web.session import RouteBase
from mailiverse.web.validation import etag, import_flag, object_json, parse_etag, query_arg

if TYPE_CHECKING:
    from mailiverse.store.changes import ChangesPage

#: Default and largest page size of ``GET /api/store``.
DEFAULT_LIST_LIMIT = 100
MAX_API_LIST_LIMIT = min(1000, MAX_LIST_LIMIT)
#: Objects under this prefix are written by the server only (delivery and the Sent copy).
SERVER_WRITTEN_PREFIX = "Mail"
#: Folders under Mail/ that ``PUT /api/store/<path>?import=1`` may create (an original store dump, docs/legacy.md).
#: Mail folders a client may import into (create only): a dump's, and what a mail app saves through the bridge
#: (docs/bridge.md): drafts, and the Sent copy of apps that keep their own.
IMPORTABLE_MAIL_FOLDERS = (
    "Mail/In/",
    "Mail/In_Json/",
    "Mail/Out/",
    "Mail/Out_Json/",
    "Mail/Sent/",
    "Mail/Sent_Json/",
    "Mail/Drafts/",
    "Mail/Drafts_Json/",
)
_PIECE = 1024 * 1024
#: ``GET /api/store?since=``: default and largest page of changes.
DEFAULT_CHANGES_LIMIT = 1000
#: ``POST /api/batch``: most paths asked at once; largest object sent inline (a bigger one is fetched alone);
#: most bytes of bodies in one answer (the rest say ``limit``: ask again); bytes read from the database at a time.
MAX_BATCH_PATHS = 500
MAX_BATCH_OBJECT = 4 * 1024 * 1024
MAX_BATCH_BYTES = 32 * 1024 * 1024
_BATCH_READ_BYTES = 2 * 1024 * 1024
_BATCH_READ_PATHS = 100
BATCH_CONTENT_TYPE = b"application/vnd.mailiverse.batch"
_BATCH_JSON_BYTES = 512 * 1024


def _number(request: Any, name: bytes) -> int | None:
    text = query_arg(request, name)
    if text is None:
        return None
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise ApiError("invalid_request", f"{name.decode()} is a change number, 0 or more")
    return int(text)


def _limit(request: Any, default: int, most: int) -> int:
    """The ``limit`` asked (1 to ``most``), else ``default``."""
    text = query_arg(request, b"limit")
    if text is None:
        return default
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= most:
        raise ApiError("invalid_request", f"limit is 1 to {most}")
    return int(text)


def _changes_json(page: ChangesPage) -> dict[str, Any]:
    from mailiverse.store.changes import Gone

    changed, deleted = [], []
    for item in page.items:
        if isinstance(item, Gone):
            deleted.append({"path": item.path, "seq": item.seq})
        else:
            changed.append({**object_json(item), "seq": item.seq})
    return {"objects": changed, "deleted": deleted, "seq": page.seq, "reset": page.reset, "next": page.next}


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class StoreRoutes(RouteBase):
    """Ciphertext objects by path, with versions as ETags; nothing here can read them."""

    @router.route("/api/store", methods=["GET"])
    async def list_store(self, request: Any) -> bytes:
        _record, user = await self.user_of(request)
        return await self.list_objects_of(request, user.id)

    async def list_objects_of(self, request: Any, user_id: int) -> bytes:
        """One page of the listing of ``user_id``'s store (the query as ``GET /api/store`` takes it)."""
        prefix = validate_prefix(query_arg(request, b"prefix") or "")
        since = _number(request, b"since")
        if since is not None:
            return await self._changes_of(request, user_id, prefix, since)
        order = query_arg(request, b"order") or "name"
        if order not in ("name", "newest"):
            raise ApiError("invalid_request", "order is 'name' or 'newest'")
        limit = _limit(request, DEFAULT_LIST_LIMIT, MAX_API_LIST_LIMIT)
        after_text = query_arg(request, b"after")
        after: str | NewestCursor | None = None
        if after_text is not None:
            after = NewestCursor.from_token(after_text) if order == "newest" else validate_prefix(after_text)
        page = await self.homes.run_for(
            user_id, objects.list_objects_txn, user_id, prefix, after=after, limit=limit, newest_first=order == "newest"
        )
        following = None
        if len(page) == limit:
            last = page[-1]
            following = last.newest_cursor.to_token() if order == "newest" else last.path
        return json_response(request, {"objects": [object_json(i) for i in page], "next": following})

    async def _changes_of(self, request: Any, user_id: int, prefix: str, since: int) -> bytes:
        """``GET /api/store?since=N[&after=M][&prefix=P][&limit=L]``: what changed after change ``since``."""
        # The sync's modules load at the first sync, not at start-up (docs/appliance.md, Memory).
        from mailiverse.store.changes import MAX_CHANGES_LIMIT, changes_since_txn

        if query_arg(request, b"order") is not None:
            raise ApiError("invalid_request", "changes come in change order; order does not apply")
        limit = _limit(request, DEFAULT_CHANGES_LIMIT, MAX_CHANGES_LIMIT)
        page = await self.homes.run_for(
            user_id, changes_since_txn, user_id, since, after=_number(request, b"after"), prefix=prefix, limit=limit
        )
        return json_response(request, _changes_json(page))

    @router.route("/api/batch", methods=["POST"])
    async def batch(self, request: Any) -> bytes | None:
        _record, user = await self.user_of(request)
        return await self.send_batch_of(request, user.id)

    async def send_batch_of(self, request: Any, user_id: int) -> bytes | None:
        """``POST /api/batch`` ``{"paths": [...]}``: many objects of ``user_id``'s store in one streamed answer.

        For each path asked, in order: one line of JSON (``path``, ``version``, ``size``, ``seq``; or ``path`` and
        ``error``: ``not_found``, ``too_large`` (fetch it alone) or ``limit`` (ask again)), then ``size`` bytes."""
        from mailiverse.store.changes import read_many_txn, sizes_txn

        body = read_json(request, _BATCH_JSON_BYTES)
        paths = body.get("paths")
        if not isinstance(paths, list) or not 1 <= len(paths) <= MAX_BATCH_PATHS:
            raise ApiError("invalid_request", f"paths is a list of 1 to {MAX_BATCH_PATHS} object paths")
        if len(set(map(str, paths))) != len(paths):
            raise ApiError("invalid_request", "a path appears twice")
        for path in paths:
            validate_path(path)
        infos = await self.homes.run_for(user_id, sizes_txn, user_id, paths)
        plan: list[list[str]] = [[]]
        errors: dict[str, str] = {}
        budget = MAX_BATCH_BYTES
        weight = 0
        for path in paths:
            info = infos.get(path)
            if info is None:
                errors[path] = "not_found"
            elif info.size > MAX_BATCH_OBJECT:
                errors[path] = "too_large"
            elif info.size > budget:
                errors[path] = "limit"
            else:
                budget -= info.size
                if plan[-1] and (weight + info.size > _BATCH_READ_BYTES or len(plan[-1]) >= _BATCH_READ_PATHS):
                    plan.append([])
                    weight = 0
                plan[-1].append(path)
                weight += info.size
        request.setHeader(b"Content-Type", BATCH_CONTENT_TYPE)
        request.setHeader(b"Cache-Control", b"no-store")
        fetched = {}
        groups = iter(plan)
        for path in paths:
            if getattr(request, "_disconnected", False):
                return None  # the client went away: read nothing more for it
            if path in errors:
                request.write(_line({"path": path, "error": errors[path]}))
                continue
            if path not in fetched:
                group = next(groups)
                got = await self.homes.run_for(user_id, read_many_txn, user_id, group, MAX_BATCH_OBJECT)
                fetched = {item.path: item for item in got}
            item = fetched[path]
            if item.info is None or item.body is None:
                request.write(_line({"path": path, "error": item.error or "not_found"}))
                continue
            info = item.info
            request.write(_line({"path": path, "version": info.version, "size": len(item.body), "seq": info.seq}))
            request.write(item.body)
        return None

    @router.route("/api/store/<path:path>", methods=["GET"])
    async def get_object(self, request: Any, path: str) -> bytes | None:
        _record, user = await self.user_of(request)
        return await self.send_object_of(request, user.id, path)

    async def send_object_of(self, request: Any, user_id: int, path: str) -> bytes | None:
        """One object of ``user_id``'s store as the response (ETag, 304 on a match, streamed)."""
        validate_path(path)
        info, chunks = await open_object(self.homes.reader(user_id), user_id, path)
        tag = etag(info.version)
        request.setHeader(b"ETag", tag)
        request.setHeader(b"Cache-Control", b"no-store")
        if request.getHeader(b"if-none-match") is not None and request.getHeader(b"if-none-match").strip() == tag:
            request.setResponseCode(304)
            return b""
        request.setHeader(b"Content-Type", b"application/octet-stream")
        request.setHeader(b"Content-Length", str(info.size).encode("ascii"))
        if request.method == b"HEAD":
            return b""
        async for chunk in chunks:
            request.write(chunk)
        return None

    @router.route("/api/store/<path:path>", methods=["PUT"])
    async def put_object(self, request: Any, path: str) -> bytes:
        _record, user = await self.user_of(request)
        validate_path(path)
        importing = import_flag(request)
        if path == SERVER_WRITTEN_PREFIX or path.startswith(SERVER_WRITTEN_PREFIX + "/"):
            if not importing or not path.startswith(IMPORTABLE_MAIL_FOLDERS):
                raise ApiError("read_only_path", "objects under Mail/ are written by the server only", 403)
            if request.getHeader(b"if-none-match") is None or request.getHeader(b"if-match") is not None:
                raise ApiError("invalid_precondition", "an import under Mail/ needs If-None-Match: * only")
        check_body_size(request, MAX_OBJECT_BYTES)
        if_version, if_absent = await self._preconditions(request, user.id, path)
        content = request.content

        def pieces() -> Iterator[bytes]:
            while piece := content.read(_PIECE):
                yield piece

        info = await self.homes.transact_for(
            user.id,
            objects.put_object_txn,
            user.id,
            path,
            pieces(),
            if_version=if_version,
            if_absent=if_absent,
            now_ms=_now_ms(),
            max_size=MAX_OBJECT_BYTES,
            default_quota=self.default_quota,
        )
        request.setHeader(b"ETag", etag(info.version))
        return json_response(request, object_json(info), 201 if info.version == 1 else 200)

    async def _preconditions(self, request: Any, user_id: int, path: str) -> tuple[int | None, bool]:
        """(the version If-Match names, whether If-None-Match: * asks for a new object)."""
        if_match = request.getHeader(b"if-match")
        if_none_match = request.getHeader(b"if-none-match")
        if if_none_match is not None:
            if if_none_match.strip() != b"*":
                raise ApiError("invalid_precondition", "If-None-Match accepts only *")
            if if_match is not None:
                raise ApiError("invalid_precondition", "give If-Match or If-None-Match, not both")
            return None, True
        if if_match is None:
            return None, False
        if if_match.strip() == b"*":
            current = await self.homes.run_for(user_id, objects.get_object_info_txn, user_id, path)
            if current is None:
                raise VersionConflict("no object exists at this path")
            return current.version, False
        return parse_etag(if_match), False

    @router.route("/api/store/<path:path>", methods=["DELETE"])
    async def delete_object(self, request: Any, path: str) -> bytes:
        _record, user = await self.user_of(request)
        validate_path(path)
        if_match = request.getHeader(b"if-match")
        if_version = parse_etag(if_match) if if_match is not None and if_match.strip() != b"*" else None
        if not await self.homes.transact_for(user.id, objects.delete_object_txn, user.id, path, if_version=if_version):
            raise ApiError("not_found", "no object at this path", 404)
        return json_response(request, {"status": "deleted", "path": path})


def _line(header: dict[str, Any]) -> bytes:
    return json.dumps(header, separators=(",", ":")).encode("utf-8") + b"\n"


__all__ = ["StoreRoutes"]
