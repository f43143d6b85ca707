"""The routes under ``/Mailiverse/``: the MV Store API, StoreEnable, Send, and the two WebSocket servers.

Store requests carry ``Authorization: MV <key id>:<HMAC-SHA1>`` over the request line the
original client signs, and an ``X-Mv-Date`` that must be within the configured skew of the
server clock.  Objects come back byte for byte, with the ``Version`` header the original
client requires; listings use the original JSON and date format.

The Site that mounts these routes asks ``LegacyResource`` (``IBodyGate``) how large a body each
request may send before the body arrives: a StorePut whose signature verifies up to
``MAX_PUT_BYTES``, Send (whose credential is inside its encrypted body) up to its own 1 MiB, and
anything else a few KiB.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, NamedTuple

from klein import Klein
from twisted.web.resource import Resource
from zope.interface import implementer

from mailiverse.auth.forwarded import client_address
from mailiverse.compat import mvsign
from mailiverse.config import DEFAULT_QUOTA_BYTES
from mailiverse.contracts import ANONYMOUS_ALLOWANCE, ANONYMOUS_BODY_BYTES, Allowance, BodyAllowance, IBodyGate
from mailiverse.legacy.backend import LegacyBackend, LegacyRefused
from mailiverse.legacy.send import MAX_BODY_BYTES, SendRefused, relay
from mailiverse.logs import Logger
from mailiverse.store import objects as repo_objects
from mailiverse.store.errors import InvalidPath, ObjectNotFound, ObjectTooLarge, OverQuota
from mailiverse.store.objects import validate_path, validate_prefix
from mailiverse.store.users import get_user_by_id_txn
from mailiverse.submission import Submission

log = Logger()

#: Largest StorePut body (client cache files are under 100 KB; imports may carry mail).
MAX_PUT_BYTES = 64 * 1024 * 1024
#: Most objects one StoreList returns (the original returned everything).
MAX_LIST_OBJECTS = 100_000
_PAGE = 10_000
MAX_RESOURCE_CHARS = 1024


def list_date(ms: int) -> str:
    """``yyyy-MM-dd'T'HH:mm:ss.SSS'Z GMT'`` in UTC, the original listing's date format."""
    t = datetime.fromtimestamp(ms // 1000, UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z GMT"


class _HttpError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class _Signed(NamedTuple):
    """A request whose MV signature verified: its account, its Resource, and what was signed."""

    user_id: int
    resource: str
    authorization: str
    date_ms: int


class LegacyWeb:
    """The ``/Mailiverse/`` web resource: a Klein app holding the backend and its collaborators."""

    router = Klein()

    def __init__(
        self,
        backend: LegacyBackend,
        *,
        submission: Submission | None = None,
        keyserver: Any = None,
        mailserver: Any = None,
        default_quota: int = DEFAULT_QUOTA_BYTES,
    ) -> None:
        self.backend = backend
        self.submission = submission
        self.default_quota = default_quota
        self.keyserver = keyserver
        self.mailserver = mailserver

    def resource(self) -> LegacyResource:
        return LegacyResource(self)

    def body_allowance(self, request: Any, path: bytes) -> Allowance:
        """How large a body ``request`` to ``path`` (``/StorePut``) may send, from its headers (see the module)."""
        if path == b"/Send":
            return BodyAllowance(MAX_BODY_BYTES)
        if path == b"/StorePut" and request.method == b"PUT" and request.getHeader(b"authorization") is not None:
            return self._signed_put_allowance(request)
        return ANONYMOUS_ALLOWANCE

    async def _signed_put_allowance(self, request: Any) -> BodyAllowance:
        # The signature covers the method, Content-Type, X-Mv-Date and Resource: all known before the body.
        try:
            await self._authenticate(request, "PUT")
        except _HttpError as refused:
            return BodyAllowance(ANONYMOUS_BODY_BYTES, refused.status, refused.code, refused.message)
        return BodyAllowance(MAX_PUT_BYTES)

    # -- helpers -------------------------------------------------------------------------------

    def _headers(self, request: Any) -> None:
        domain = self.backend.options.hostname
        request.setHeader(b"Access-Control-Allow-Origin", f"https://{domain}".encode())
        request.setHeader(b"Cache-Control", b"no-store")
        request.setHeader(b"X-Content-Type-Options", b"nosniff")

    def _error(self, request: Any, error: _HttpError) -> bytes:
        self._headers(request)
        request.setResponseCode(error.status)
        request.setHeader(b"Content-Type", b"application/json")
        return json.dumps({"error": error.code, "message": error.message}).encode()

    @staticmethod
    def _arg(request: Any, name: bytes, limit: int = MAX_RESOURCE_CHARS) -> str | None:
        values = request.args.get(name)
        if not values:
            return None
        try:
            text = values[0].decode("utf-8")
        except UnicodeDecodeError:
            raise _HttpError(400, "bad_request", "parameter is not UTF-8") from None
        if len(text) > limit:
            raise _HttpError(400, "bad_request", "parameter too long")
        return str(text)

    async def _authenticate(self, request: Any, method: str, *, prefix: bool = False) -> _Signed:
        """The account, Resource and verified signature of a correctly signed, fresh request; _HttpError otherwise."""
        resource = self._arg(request, b"Resource")
        if resource is None:
            raise _HttpError(400, "bad_request", "the Resource parameter is missing")
        try:
            if prefix:
                validate_prefix(resource)
            else:
                validate_path(resource)
        except InvalidPath:
            raise _HttpError(400, "bad_path", "the Resource is not a valid store path") from None
        authorization = (request.getHeader(b"authorization") or b"").decode("latin-1")
        mv_date = (request.getHeader(b"x-mv-date") or b"").decode("latin-1")
        content_type = (request.getHeader(b"content-type") or b"").decode("latin-1")
        denied = _HttpError(403, "forbidden", "the request signature is not valid")
        try:
            key_id, _ = mvsign.parse_authorization(authorization)
            date_ms = mvsign.parse_mv_date(mv_date)
        except ValueError:
            raise denied from None
        if abs(self.backend.now_ms() - date_ms) > self.backend.options.date_skew_seconds * 1000:
            raise _HttpError(403, "stale_date", "X-Mv-Date is too far from the server's clock")
        found = await self.backend.credentials(key_id)
        if found is None:
            raise denied
        creds, secret = found
        if not mvsign.verify(authorization, key_id, secret, method, content_type, mv_date, resource):
            raise denied
        if creds.user_id is None:
            raise _HttpError(403, "unbound", "these credentials belong to no account yet")
        user = await self.backend.database.run(get_user_by_id_txn, creds.user_id)
        if user is None or user.disabled:
            raise denied
        return _Signed(user.id, resource, authorization, date_ms)

    # -- the MV store ------------------------------------------------------------------------

    @router.route("/StoreList", methods=["GET"])
    async def store_list(self, request: Any) -> bytes:
        try:
            user_id, prefix = (await self._authenticate(request, "GET", prefix=True))[:2]
        except _HttpError as e:
            return self._error(request, e)
        contents: list[dict[str, Any]] = []
        after: str | None = None
        truncated = False
        while True:
            page = await self.backend.database.run(
                repo_objects.list_objects_txn, user_id, prefix, after=after, limit=_PAGE
            )
            for info in page:
                contents.append(
                    {
                        "path": info.path,
                        "size": info.size,
                        "version": self.backend.version_tag(info),
                        "date": list_date(info.modified_ms),
                    }
                )
            if len(page) < _PAGE:
                break
            if len(contents) >= MAX_LIST_OBJECTS:
                truncated = True
                break
            after = page[-1].path
        self._headers(request)
        request.setHeader(b"Content-Type", b"application/json")
        return json.dumps({"contents": contents, "isTruncated": truncated}, separators=(",", ":")).encode()

    @router.route("/StoreGet", methods=["GET"])
    async def store_get(self, request: Any) -> bytes:
        try:
            user_id, path = (await self._authenticate(request, "GET"))[:2]
            info = await self.backend.database.run(repo_objects.get_object_info_txn, user_id, path)
            if info is None:
                raise _HttpError(404, "not_found", "no object at this path")
            data = await self.backend.database.run(repo_objects.read_object_txn, user_id, path)
            # Re-read the metadata: the body and the Version header must belong together.
            again = await self.backend.database.run(repo_objects.get_object_info_txn, user_id, path)
            if again is None or again.version != info.version:
                raise _HttpError(409, "changed", "the object changed while it was read; retry")
        except ObjectNotFound:
            return self._error(request, _HttpError(404, "not_found", "no object at this path"))
        except _HttpError as e:
            return self._error(request, e)
        self._headers(request)
        request.setHeader(b"Content-Type", b"application/octet-stream")
        request.setHeader(b"Version", self.backend.version_tag(info).encode("ascii"))
        return data

    def _body(self, request: Any, limit: int) -> bytes:
        declared = request.getHeader(b"content-length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                raise _HttpError(400, "bad_request", "Content-Length is not a number") from None
            if length > limit:
                raise _HttpError(413, "too_large", f"at most {limit} bytes")
        request.content.seek(0)
        body: bytes = request.content.read(limit + 1)
        if len(body) > limit:
            raise _HttpError(413, "too_large", f"at most {limit} bytes")
        if declared is not None and int(declared) != len(body):
            raise _HttpError(400, "bad_request", "Content-Length does not match the body")
        return body

    def _not_replayed(self, signed: _Signed, body: bytes) -> None:
        """Refuse a verified StorePut signature seen before with another body (see legacy/replay.py)."""
        if not self.backend.put_replays.admit(signed.authorization, signed.date_ms, body):
            raise _HttpError(403, "replayed", "this signature was already used with another body; sign anew")

    @router.route("/StorePut", methods=["PUT"])
    async def store_put(self, request: Any) -> bytes:
        try:
            signed = await self._authenticate(request, "PUT")
            user_id, path = signed.user_id, signed.resource
            body = self._body(request, MAX_PUT_BYTES)
            self._not_replayed(signed, body)
            info = await self.backend.database.transact(
                repo_objects.put_object_txn,
                user_id,
                path,
                body,
                now_ms=self.backend.now_ms(),
                max_size=MAX_PUT_BYTES,
                default_quota=self.default_quota,
            )
        except ObjectTooLarge:
            return self._error(request, _HttpError(413, "too_large", "the object is too large"))
        except OverQuota:
            return self._error(request, _HttpError(507, "over_quota", "the account's storage quota is used up"))
        except _HttpError as e:
            return self._error(request, e)
        self._headers(request)
        request.setHeader(b"Version", self.backend.version_tag(info).encode("ascii"))
        return b""

    @router.route("/StoreDelete", methods=["DELETE"])
    async def store_delete(self, request: Any) -> bytes:
        try:
            user_id, path = (await self._authenticate(request, "DELETE"))[:2]
            await self.backend.database.transact(repo_objects.delete_object_txn, user_id, path)
        except _HttpError as e:
            return self._error(request, e)
        self._headers(request)
        return b""

    @router.route("/StoreEnable", methods=["GET"])
    async def store_enable(self, request: Any) -> bytes:
        try:
            email = self._arg(request, b"email", 320)
            captcha = self._arg(request, b"captcha", 512)
            if email is None:
                raise _HttpError(400, "bad_request", "the email parameter is missing")
            token = None if captcha in (None, "", "null") else captcha
            key_id, secret = await self.backend.store_enable(email, token, client_address(request))
        except _HttpError as e:
            return self._error(request, e)
        except LegacyRefused as e:
            return self._error(request, _HttpError(403, "refused", str(e)))
        self._headers(request)
        request.setHeader(b"Content-Type", b"text/plain")
        return f"AccessKeyId!{key_id}&SecretKey!{secret}".encode("ascii")

    # -- Send --------------------------------------------------------------------------------

    @router.route("/Send", methods=["PUT"])
    async def send(self, request: Any) -> bytes:
        try:
            body = self._body(request, MAX_BODY_BYTES)
            await relay(self.backend, self.submission, body, client_address(request))
        except _HttpError as e:
            return self._error(request, e)
        except SendRefused as e:
            return self._error(request, _HttpError(e.status, "refused", str(e)))
        self._headers(request)
        request.setHeader(b"Content-Type", b"text/plain")
        return b"Ok\n"

    # -- WebSocket line servers --------------------------------------------------------------

    @router.route("/KeyServer")
    def keyserver_route(self, request: Any) -> Any:
        return self.keyserver

    @router.route("/MailServer")
    def mailserver_route(self, request: Any) -> Any:
        return self.mailserver

    @router.handle_errors(Exception)
    def errors(self, request: Any, failure: Any) -> bytes:
        from werkzeug.exceptions import MethodNotAllowed, NotFound

        if failure.check(NotFound):
            return self._error(request, _HttpError(404, "not_found", "no such route"))
        if failure.check(MethodNotAllowed):
            return self._error(request, _HttpError(405, "method_not_allowed", "method not allowed"))
        log.failure("legacy web route failed", failure)
        return self._error(request, _HttpError(500, "internal", "internal error"))


@implementer(IBodyGate)
class LegacyResource(Resource):
    """The ``/Mailiverse/`` resource: the Klein routes of ``LegacyWeb``, and the body allowance of each."""

    isLeaf = True

    def __init__(self, web: LegacyWeb) -> None:
        super().__init__()
        self._web = web
        self._routes = web.router.resource()

    def render(self, request: Any) -> Any:
        return self._routes.render(request)

    def body_allowance(self, request: Any, path: bytes) -> Allowance:
        return self._web.body_allowance(request, path)
