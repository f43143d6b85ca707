"""The appliance's web service: a Klein app object holding its collaborators, serving the JSON API and the static client.

Every route is ``async def``; the rules (sign-up, SRP, sessions) live in ``mailiverse.accounts``
and the store, and this module only maps HTTP to them. Errors are JSON ``{"error", "message"}``
with a stable code everywhere, including 404, 405 and malformed bodies. The API is described
in ``docs/api.md`` and served as OpenAPI 3.1 at ``/api/openapi.json``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import urllib.parse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from klein import Klein
from twisted.web.resource import IResource, NoResource, Resource
from twisted.web.server import Site
from twisted.web.static import File
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from mailiverse import __version__
from mailiverse.accounts.errors import AccountError
from mailiverse.accounts.service import (
    AccountService,
    NewVerifier,
    Proof,
    SignupRequest,
    check_username,
)
from mailiverse.auth.devices import DEVICE_COOKIE, clear_device_cookie, device_cookie
from mailiverse.auth.sessions import (
    SESSION_COOKIE,
    SessionRecord,
    clear_session_cookie,
)
from mailiverse.crypto.keys import load_public_key
from mailiverse.store.db import Database
from mailiverse.store.errors import (
    InvalidInput,
    InvalidPath,
    ObjectNotFound,
    ObjectTooLarge,
    VersionConflict,
)
from mailiverse.store.facade import Store
from mailiverse.store.objects import MAX_LIST_LIMIT, NewestCursor, ObjectInfo
from mailiverse.store.paths import validate_path, validate_prefix
from mailiverse.store.users import User, get_user
from mailiverse.web.body import (
    ACCOUNT_JSON_BYTES,
    BoundedRequest,
    check_body_size,
    is_oversized,
    read_json,
)
from mailiverse.web.headers import apply_security_headers
from mailiverse.web.openapi import openapi_document
from mailiverse.web.send import Composed, Sender

WEBCLIENT_DIR = Path(__file__).resolve().parent.parent.parent / "webclient"

#: Largest object body accepted by ``PUT /api/store/{path}``.
MAX_OBJECT_BYTES = 64 * 1024 * 1024
#: Default and largest page size of ``GET /api/store``.
DEFAULT_LIST_LIMIT = 100
MAX_API_LIST_LIMIT = min(1000, MAX_LIST_LIMIT)
#: Objects under this prefix are written by the server only (delivery and the Sent copy).
SERVER_WRITTEN_PREFIX = "Mail"
#: Folders under Mail/ that ``PUT /api/store/<path>?import=1`` may create (an original store dump, docs/legacy.md).
IMPORTABLE_MAIL_FOLDERS = ("Mail/In/", "Mail/In_Json/", "Mail/Out/", "Mail/Out_Json/")
_STATE_CHANGING = frozenset({b"POST", b"PUT", b"DELETE", b"PATCH"})
_ALL_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH")
_FALLBACK_ENDPOINTS = frozenset({"api_not_found", "api_not_found_branch", "static", "static_branch"})


def b64(data: bytes) -> str:
    """Standard base64 with padding, as every byte field of the API is written."""
    return base64.b64encode(data).decode("ascii")


def _field(body: dict[str, Any], name: str, *, optional: bool = False) -> Any:
    if name not in body or body[name] is None:
        if optional:
            return None
        raise AccountError("invalid_request", f"the field {name!r} is missing")
    return body[name]


def _text(body: dict[str, Any], name: str, limit: int, *, optional: bool = False) -> str | None:
    value = _field(body, name, optional=optional)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise AccountError(
            "invalid_request", f"the field {name!r} must be text of at most {limit} characters"
        )
    return value


def _bytes(body: dict[str, Any], name: str, limit: int) -> bytes:
    value = _field(body, name)
    if not isinstance(value, str) or len(value) > (limit + 2) // 3 * 4:
        raise AccountError("invalid_request", f"the field {name!r} must be base64 text")
    try:
        data = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise AccountError("invalid_request", f"the field {name!r} is not valid base64") from None
    return data


def _proof(body: Any) -> Proof:
    if not isinstance(body, dict):
        raise AccountError("invalid_request", "the proof must be an object {handle, A, M}")
    handle = _text(body, "handle", 64)
    assert handle is not None
    return Proof(handle=handle, A=_bytes(body, "A", 512), M=_bytes(body, "M", 64))


def _device_token(request: Any, body: Any) -> str | None:
    """The device token a login shows: the ``device`` field (native clients), else the browser's cookie."""
    if isinstance(body, dict) and body.get("device") is not None:
        value = body["device"]
        if not isinstance(value, str) or len(value) > 128:
            raise AccountError("invalid_request", "the field 'device' must be the device token text")
        return value
    cookie = request.getCookie(DEVICE_COOKIE.encode("ascii"))
    return cookie.decode("latin-1") if cookie is not None else None


def _addresses_list(body: dict[str, Any], name: str) -> tuple[str, ...]:
    value = body.get(name) or []
    if not isinstance(value, list) or len(value) > 100 or not all(isinstance(v, str) for v in value):
        raise AccountError("invalid_request", f"the field {name!r} must be a list of addresses")
    return tuple(value)


def _etag(version: int) -> bytes:
    return f'"{version}"'.encode("ascii")


def _parse_etag(value: bytes) -> int:
    text = value.decode("latin-1").strip()
    if text.startswith("W/"):
        text = text[2:]
    text = text.strip('"')
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise AccountError("invalid_precondition", "If-Match needs an ETag from this API", 400)
    return int(text)


def _object_json(info: ObjectInfo) -> dict[str, Any]:
    return {
        "path": info.path,
        "version": info.version,
        "size": info.size,
        "created_ms": info.created_ms,
        "modified_ms": info.modified_ms,
    }


def _import_flag(request: Any) -> bool:
    """Whether a store PUT asks to import an original object (``?import=1``); other values are refused."""
    values = request.args.get(b"import")
    if values is None:
        return False
    if values != [b"1"]:
        raise AccountError("invalid_request", "import takes the value 1, once")
    return True


def client_ip(request: Any) -> str:
    """The peer's IP address as text ("0.0.0.0" for a peer that has none, such as a UNIX socket)."""
    host = getattr(request.getClientAddress(), "host", None)
    return host if isinstance(host, str) and host else "0.0.0.0"  # noqa: S104 - a rate-limit key, not a bind


def body_limit_for(max_message_size: int) -> Callable[[bytes], int]:
    """The per-path body caps the Site enforces while a body arrives."""
    send_limit = (max_message_size + 2) // 3 * 4 + ACCOUNT_JSON_BYTES

    def limit(path: bytes) -> int:
        if path.startswith((b"/api/store/", b"/Mailiverse/")):
            return MAX_OBJECT_BYTES
        if path == b"/api/send":
            return send_limit
        return ACCOUNT_JSON_BYTES

    return limit


class _StaticFiles(File):
    """The web client's files; folders are not listed (a listing maps the client for nobody's benefit)."""

    def directoryListing(self) -> Resource:
        return NoResource("not found")


class _Secured(Resource):
    """Puts the security headers on every response, then lets the Klein resource render."""

    isLeaf = True

    def __init__(self, inner: IResource, tls: bool) -> None:
        super().__init__()
        self._inner = inner
        self._tls = tls

    def render(self, request: Any) -> Any:
        apply_security_headers(request, tls=self._tls)
        if is_oversized(request):
            # The body was dropped on arrival (BoundedRequest); no route may see a truncated one.
            request.setResponseCode(413)
            request.setHeader(b"Content-Type", b"application/json")
            request.setHeader(b"Cache-Control", b"no-store")
            request.setHeader(b"Connection", b"close")
            return json.dumps(
                {"error": "body_too_large", "message": "the request body is larger than this route accepts"}
            ).encode()
        if not _url_is_utf8(request):
            # Klein would answer a text/html 400 and log a traceback; every other error here is JSON.
            request.setResponseCode(400)
            request.setHeader(b"Content-Type", b"application/json")
            request.setHeader(b"Cache-Control", b"no-store")
            return json.dumps({"error": "invalid_request", "message": "the URL is not valid UTF-8"}).encode()
        return self._inner.render(request)


def _url_is_utf8(request: Any) -> bool:
    """Whether the host name and the (already unquoted) path segments are UTF-8, as routing needs."""
    try:
        request.getRequestHostname().decode("utf-8")
        b"/".join([*request.prepath, *request.postpath]).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class WebApp:
    """The HTTPS API and static client, over an ``AccountService``, the store and a ``Sender``.

    Without ``accounts`` (and ``database``) only health, OpenAPI and static files are served;
    every other API route answers 503 ``api_unavailable``.
    """

    router = Klein()

    def __init__(
        self,
        *,
        hostname: str,
        domains: tuple[str, ...],
        tls: bool = True,
        static_dir: Path = WEBCLIENT_DIR,
        database: Database | None = None,
        accounts: AccountService | None = None,
        sender: Sender | None = None,
        max_message_size: int = 50 * 1024 * 1024,
        legacy_resource: IResource | None = None,
    ) -> None:
        self.hostname = hostname
        self.legacy_resource = legacy_resource
        #: The MTA-STS policy text (RFC 8461) served at /.well-known/mta-sts.txt, or None.
        self.mta_sts_policy: str | None = None
        self.domains = tuple(domains)
        self.tls = tls
        self.static_dir = static_dir
        self.database = database
        self.store = Store(database) if database is not None else None
        self.accounts = accounts
        self.sender = sender
        self.max_message_size = max_message_size

    def plain(self) -> WebApp:
        """The same app with the same collaborators for a plain-HTTP endpoint behind a TLS proxy (no HSTS)."""
        app = WebApp(
            hostname=self.hostname,
            domains=self.domains,
            tls=False,
            static_dir=self.static_dir,
            database=self.database,
            accounts=self.accounts,
            sender=self.sender,
            max_message_size=self.max_message_size,
            legacy_resource=self.legacy_resource,
        )
        app.mta_sts_policy = self.mta_sts_policy
        return app

    def resource(self) -> IResource:
        """The root resource: every route, with security headers on every response."""
        return _Secured(self.router.resource(), self.tls)

    def site(self) -> Site:
        """A ``Site`` whose requests keep at most each route's body cap (see ``BoundedRequest``)."""
        limit = body_limit_for(self.max_message_size)

        class _Request(BoundedRequest):
            body_limit = staticmethod(limit)

        # No route takes form data (the API is JSON, the legacy protocol puts raw bodies), so bodies
        # are never parsed into ``args``: parsing costs memory, and Twisted answers a malformed
        # multipart body with its own bare 400 before the app can (415, in JSON).
        return Site(self.resource(), requestFactory=_Request, parsePOSTFormSubmission=False)

    # -- helpers ---------------------------------------------------------------------------

    def _json(self, request: Any, value: Any, code: int = 200) -> bytes:
        request.setResponseCode(code)
        request.setHeader(b"Content-Type", b"application/json")
        request.setHeader(b"Cache-Control", b"no-store")
        return json.dumps(value, separators=(",", ":")).encode()

    def _error(
        self, request: Any, code: str, message: str, status: int, retry_after: int | None = None
    ) -> bytes:
        if retry_after is not None:
            request.setHeader(b"Retry-After", str(retry_after).encode("ascii"))
        if status == 401:
            request.setHeader(b"WWW-Authenticate", b'Bearer realm="mailiverse"')
        return self._json(request, {"error": code, "message": message}, status)

    def _services(self) -> tuple[AccountService, Store]:
        if self.accounts is None or self.store is None:
            raise AccountError("api_unavailable", "the account API is not configured", 503)
        return self.accounts, self.store

    def _check_origin(self, request: Any) -> None:
        """Refuse requests a browser marks as cross-site (login CSRF and cookie-authenticated writes)."""
        site = request.getHeader(b"sec-fetch-site")
        if site is not None and site.strip().lower() not in (b"same-origin", b"none"):
            raise AccountError("csrf_failed", "cross-site requests are refused", 403)
        origin = request.getHeader(b"origin")
        if origin is None:
            return
        host = (request.getHeader(b"host") or b"").strip().lower()
        parsed = urllib.parse.urlsplit(origin.decode("latin-1").strip().lower())
        if not host or parsed.netloc.encode("latin-1") != host or parsed.scheme not in ("https", "http"):
            raise AccountError("csrf_failed", "cross-origin requests are refused", 403)

    async def _session(self, request: Any) -> SessionRecord:
        """The live session of the request, by bearer token or by cookie (+ CSRF on writes)."""
        accounts, _store = self._services()
        authorization = request.getHeader(b"authorization")
        bearer = False
        token: str | None = None
        if authorization is not None:
            scheme, _, value = authorization.decode("latin-1").partition(" ")
            if scheme.lower() != "bearer":
                raise AccountError("unauthenticated", "use a Bearer token or the session cookie", 401)
            token, bearer = value.strip(), True
        else:
            cookie = request.getCookie(SESSION_COOKIE.encode("ascii"))
            token = cookie.decode("latin-1") if cookie is not None else None
        record = await accounts.sessions.lookup(token)
        if record is None:
            raise AccountError("unauthenticated", "log in first (no live session)", 401)
        if not bearer and request.method in _STATE_CHANGING:
            # A browser session: the request must come from our own pages.
            self._check_origin(request)
            supplied = request.getHeader(b"x-csrf-token")
            if not accounts.sessions.check_csrf(
                record, supplied.decode("latin-1") if supplied is not None else None
            ):
                raise AccountError("csrf_failed", "missing or wrong X-CSRF-Token", 403)
        return record

    async def _user(self, request: Any) -> tuple[SessionRecord, User]:
        record = await self._session(request)
        assert self.database is not None
        user = await self.database.run(get_user, record.username)
        if user is None or user.disabled:
            raise AccountError("unauthenticated", "the account no longer exists", 401)
        return record, user

    def _addresses(self, user: User) -> list[str]:
        return [f"{user.name}@{domain}" for domain in self.domains]

    def _session_fields(self, request: Any, token: str, csrf: str) -> dict[str, Any]:
        assert self.accounts is not None
        manager = self.accounts.sessions
        # Written whole (not with addCookie) so the attributes are exactly the ones SessionManager sets.
        request.responseHeaders.addRawHeader(b"Set-Cookie", manager.cookie(token).encode("ascii"))
        return {"token": token, "csrf": csrf, "expires_in": int(manager.absolute_timeout)}

    @staticmethod
    def _device_fields(request: Any, token: str | None) -> dict[str, Any]:
        """Hand the device its token: a cookie for browsers (after the session's), a field for native clients."""
        if token is None:
            return {}
        request.responseHeaders.addRawHeader(b"Set-Cookie", device_cookie(token).encode("ascii"))
        return {"device": token}

    # -- public routes -----------------------------------------------------------------------

    @router.route("/api/health", methods=["GET"])
    async def health(self, request: Any) -> bytes:
        return self._json(request, {"status": "ok", "version": __version__, "domains": list(self.domains)})

    @router.route("/api/openapi.json", methods=["GET"])
    async def openapi(self, request: Any) -> bytes:
        return self._json(request, openapi_document(__version__))

    @router.route("/api/signup", methods=["GET"])
    async def signup_status(self, request: Any) -> bytes:
        accounts, _store = self._services()
        return self._json(
            request, {"open": await accounts.signup_open(), "domains": list(self.domains)}
        )

    @router.route("/api/signup", methods=["POST"])
    async def signup(self, request: Any) -> bytes:
        accounts, _store = self._services()
        self._check_origin(request)
        body = read_json(request, ACCOUNT_JSON_BYTES)
        username = _text(body, "user", 64)
        assert username is not None
        signup_request = SignupRequest(
            username=username,
            srp_salt=_bytes(body, "salt", 64),
            srp_verifier=_bytes(body, "verifier", 512),
            srp_group=_text(body, "group", 64) or "",
            public_key=_bytes(body, "public_key", 1024),
            key_block=_bytes(body, "key_block", 96 * 1024),
            envelope_format=_text(body, "format", 8, optional=True) or "v2",
            invite=_text(body, "invite", 64, optional=True),
        )
        user = await accounts.signup(signup_request, client_ip(request))
        return self._json(
            request,
            {"user": user.name, "addresses": self._addresses(user), "format": user.envelope_format},
            201,
        )

    @router.route("/api/login/start", methods=["POST"])
    async def login_start(self, request: Any) -> bytes:
        accounts, _store = self._services()
        self._check_origin(request)
        body = read_json(request)
        username = _text(body, "user", 256)
        start = await accounts.login_start(username, client_ip(request), _device_token(request, body))
        return self._json(
            request,
            {"handle": start.handle, "salt": b64(start.salt), "B": b64(start.B), "group": "rfc5054-2048-sha256"},
        )

    @router.route("/api/login/finish", methods=["POST"])
    async def login_finish(self, request: Any) -> bytes:
        accounts, _store = self._services()
        self._check_origin(request)
        body = read_json(request)
        result = await accounts.login_finish(_proof(body), client_ip(request), _device_token(request, body))
        fields = self._session_fields(request, result.session.token, result.session.csrf_token)
        fields.update(self._device_fields(request, result.device_token))
        return self._json(request, {"user": result.user.name, "HAMK": b64(result.hamk), **fields})

    @router.route("/api/logout", methods=["POST"])
    async def logout(self, request: Any) -> bytes:
        accounts, _store = self._services()
        await self._session(request)
        await self._revoke_request_token(request)
        request.responseHeaders.addRawHeader(b"Set-Cookie", clear_session_cookie().encode("ascii"))
        return self._json(request, {"status": "logged_out"})

    async def _revoke_request_token(self, request: Any) -> None:
        assert self.accounts is not None
        authorization = request.getHeader(b"authorization")
        if authorization is not None:
            token = authorization.decode("latin-1").partition(" ")[2].strip()
        else:
            cookie = request.getCookie(SESSION_COOKIE.encode("ascii"))
            token = cookie.decode("latin-1") if cookie is not None else ""
        await self.accounts.sessions.revoke(token)

    @router.route("/api/session", methods=["GET"])
    async def session(self, request: Any) -> bytes:
        accounts, _store = self._services()
        record = await self._session(request)
        return self._json(
            request,
            {
                "user": record.username,
                "csrf": accounts.sessions.csrf_token(record),
                "created_at": record.created_at,
                "expires_at": min(
                    record.last_seen + accounts.sessions.idle_timeout,
                    record.created_at + accounts.sessions.absolute_timeout,
                ),
            },
        )

    # -- the account -------------------------------------------------------------------------

    @router.route("/api/account", methods=["GET"])
    async def account(self, request: Any) -> bytes:
        _record, user = await self._user(request)
        key = load_public_key(user.public_key)
        return self._json(
            request,
            {
                "user": user.name,
                "addresses": self._addresses(user),
                "format": user.envelope_format,
                "public_key": b64(user.public_key),
                "fingerprint": hashlib.sha256(user.public_key).hexdigest(),
                "bits": key.key_size,
                "key_block": b64(user.key_block) if user.key_block is not None else None,
                "key_block_version": user.key_block_version,
                "created_ms": user.created_ms,
            },
        )

    @router.route("/api/account/password", methods=["POST"])
    async def change_password(self, request: Any) -> bytes:
        accounts, _store = self._services()
        record, _user = await self._user(request)
        body = read_json(request, ACCOUNT_JSON_BYTES)
        new = NewVerifier(
            srp_salt=_bytes(body, "salt", 64),
            srp_verifier=_bytes(body, "verifier", 512),
            srp_group=_text(body, "group", 64) or "",
            key_block=_bytes(body, "key_block", 96 * 1024),
        )
        version = body.get("key_block_version")
        if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
            raise AccountError("invalid_request", "key_block_version must be an integer")
        result = await accounts.change_password(
            record.username,
            _proof(body.get("proof")),
            new,
            client_ip(request),
            if_key_block_version=version,
            device_token=_device_token(request, body),
        )
        fields = self._session_fields(request, result.session.token, result.session.csrf_token)
        fields.update(self._device_fields(request, result.device_token))
        return self._json(
            request,
            {"user": result.user.name, "HAMK": b64(result.hamk), "key_block_version": result.user.key_block_version, **fields},
        )

    @router.route("/api/account", methods=["DELETE"])
    async def delete_account(self, request: Any) -> bytes:
        accounts, _store = self._services()
        record, _user = await self._user(request)
        body = read_json(request)
        hamk = await accounts.delete_account(
            record.username, _proof(body.get("proof")), client_ip(request), _device_token(request, body)
        )
        request.responseHeaders.addRawHeader(b"Set-Cookie", clear_session_cookie().encode("ascii"))
        request.responseHeaders.addRawHeader(b"Set-Cookie", clear_device_cookie().encode("ascii"))
        return self._json(request, {"status": "deleted", "HAMK": b64(hamk)})

    # -- the store ---------------------------------------------------------------------------

    @router.route("/api/store", methods=["GET"])
    async def list_store(self, request: Any) -> bytes:
        _accounts, store = self._services()
        _record, user = await self._user(request)
        args = request.args

        def arg(name: bytes) -> str | None:
            values = args.get(name)
            if not values:
                return None
            if len(values) > 1:
                raise AccountError("invalid_request", f"give {name.decode()} once")
            try:
                return values[0].decode("utf-8")
            except UnicodeDecodeError:
                raise AccountError("invalid_request", "query values must be UTF-8") from None

        prefix = validate_prefix(arg(b"prefix") or "")
        order = arg(b"order") or "name"
        if order not in ("name", "newest"):
            raise AccountError("invalid_request", "order is 'name' or 'newest'")
        limit_text = arg(b"limit")
        limit = DEFAULT_LIST_LIMIT
        if limit_text is not None:
            if not limit_text.isascii() or not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_API_LIST_LIMIT:
                raise AccountError("invalid_request", f"limit is 1 to {MAX_API_LIST_LIMIT}")
            limit = int(limit_text)
        after_text = arg(b"after")
        after: str | NewestCursor | None = None
        if after_text is not None:
            after = NewestCursor.from_token(after_text) if order == "newest" else validate_prefix(after_text)
        page = await store.list_objects(user.id, prefix, after=after, limit=limit, newest_first=order == "newest")
        following = None
        if len(page) == limit:
            last = page[-1]
            following = last.newest_cursor.to_token() if order == "newest" else last.path
        return self._json(request, {"objects": [_object_json(i) for i in page], "next": following})

    @router.route("/api/store/<path:path>", methods=["GET"])
    async def get_object(self, request: Any, path: str) -> bytes | None:
        _accounts, store = self._services()
        _record, user = await self._user(request)
        validate_path(path)
        info, chunks = await store.iter_object(user.id, path)
        etag = _etag(info.version)
        request.setHeader(b"ETag", etag)
        request.setHeader(b"Cache-Control", b"no-store")
        if request.getHeader(b"if-none-match") is not None and request.getHeader(b"if-none-match").strip() == etag:
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
        _accounts, store = self._services()
        _record, user = await self._user(request)
        validate_path(path)
        importing = _import_flag(request)
        if path == SERVER_WRITTEN_PREFIX or path.startswith(SERVER_WRITTEN_PREFIX + "/"):
            if not importing or not path.startswith(IMPORTABLE_MAIL_FOLDERS):
                raise AccountError("read_only_path", "objects under Mail/ are written by the server only", 403)
            if request.getHeader(b"if-none-match") is None or request.getHeader(b"if-match") is not None:
                raise AccountError("invalid_precondition", "an import under Mail/ needs If-None-Match: * only")
        check_body_size(request, MAX_OBJECT_BYTES)
        if_match = request.getHeader(b"if-match")
        if_none_match = request.getHeader(b"if-none-match")
        if_version: int | None = None
        if_absent = False
        if if_none_match is not None:
            if if_none_match.strip() != b"*":
                raise AccountError("invalid_precondition", "If-None-Match accepts only *")
            if_absent = True
        if if_match is not None:
            if if_absent:
                raise AccountError("invalid_precondition", "give If-Match or If-None-Match, not both")
            if if_match.strip() == b"*":
                current = await store.get_object_info(user.id, path)
                if current is None:
                    raise VersionConflict("no object exists at this path")
                if_version = current.version
            else:
                if_version = _parse_etag(if_match)
        content = request.content

        def pieces() -> Any:
            while True:
                piece = content.read(1024 * 1024)
                if not piece:
                    return
                yield piece

        info = await store.put_object(
            user.id, path, pieces(), if_version=if_version, if_absent=if_absent, max_size=MAX_OBJECT_BYTES
        )
        request.setHeader(b"ETag", _etag(info.version))
        return self._json(request, _object_json(info), 201 if info.version == 1 else 200)

    @router.route("/api/store/<path:path>", methods=["DELETE"])
    async def delete_object(self, request: Any, path: str) -> bytes:
        _accounts, store = self._services()
        _record, user = await self._user(request)
        validate_path(path)
        if_match = request.getHeader(b"if-match")
        if_version = _parse_etag(if_match) if if_match is not None and if_match.strip() != b"*" else None
        if not await store.delete_object(user.id, path, if_version=if_version):
            raise ObjectNotFound("no object at this path")
        return self._json(request, {"status": "deleted", "path": path})

    # -- keys and sending ----------------------------------------------------------------------

    @router.route("/api/keys/<address>", methods=["GET"])
    async def public_key(self, request: Any, address: str) -> bytes:
        await self._user(request)
        local, at, domain = address.rpartition("@")
        found: User | None = None
        if at and domain.lower() in self.domains:
            try:
                name = check_username(local)
            except AccountError:
                name = None
            if name is not None:
                assert self.database is not None
                found = await self.database.run(get_user, name)
        if found is None or found.disabled:
            raise AccountError("not_found", "no local user has that address", 404)
        key = load_public_key(found.public_key)
        return self._json(
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

    @router.route("/api/send", methods=["POST"])
    async def send(self, request: Any) -> bytes:
        _record, user = await self._user(request)
        if self.sender is None:
            raise AccountError("api_unavailable", "sending is not configured", 503)
        limit = body_limit_for(self.max_message_size)(b"/api/send")
        body = read_json(request, limit)
        recipients: Sequence[str] | None = None
        if "message" in body:
            message = _bytes(body, "message", self.max_message_size)
            if "recipients" in body:
                recipients = _addresses_list(body, "recipients")
        else:
            composed = Composed(
                to=_addresses_list(body, "to"),
                cc=_addresses_list(body, "cc"),
                bcc=_addresses_list(body, "bcc"),
                subject=_text(body, "subject", 998, optional=True) or "",
                text=_text(body, "text", self.max_message_size, optional=True) or "",
                from_address=_text(body, "from", 254, optional=True),
            )
            message = self.sender.compose(user, composed)
            recipients = [*composed.to, *composed.cc, *composed.bcc]
        result = await self.sender.send(user, message, recipients)
        return self._json(
            request,
            {
                "from": result.mail_from,
                "local": list(result.local),
                "remote": list(result.remote),
                "queue_id": result.queue_id,
                "sent": result.sent_path,
            },
        )

    # -- fall-through and errors -------------------------------------------------------------

    @router.route("/api/", branch=True)
    async def api_not_found(self, request: Any) -> bytes:
        allowed = self._allowed_methods(request)
        if allowed:
            request.setHeader(b"Allow", ", ".join(allowed).encode("ascii"))
            return self._error(request, "method_not_allowed", "this route does not take that method", 405)
        return self._error(request, "not_found", "no such API route", 404)

    def _allowed_methods(self, request: Any) -> list[str]:
        from klein.interfaces import IKleinRequest

        mapper = IKleinRequest(request).mapper
        allowed = []
        for method in _ALL_METHODS:
            try:
                rule, _args = mapper.match(method=method, return_rule=True)
            except HTTPException:
                continue
            if rule.endpoint not in _FALLBACK_ENDPOINTS:
                allowed.append(method)
        return allowed

    @router.route("/.well-known/mta-sts.txt", methods=["GET", "HEAD"])
    def mta_sts(self, request: Any) -> bytes:
        """The MTA-STS policy (RFC 8461 §3.2), for senders that fetch it from mta-sts.<domain>."""
        if self.mta_sts_policy is None:
            return self._error(request, "not_found", "no MTA-STS policy is published here", 404)
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        request.setHeader(b"Cache-Control", b"max-age=86400")
        return self.mta_sts_policy.encode("ascii")

    @router.route("/Mailiverse/", branch=True)
    def legacy(self, request: Any) -> Any:
        """The original Mailiverse WebSocket and Store routes, when ``--legacy`` is on."""
        if self.legacy_resource is None:
            return self._error(request, "not_found", "the legacy Mailiverse protocol is not enabled", 404)
        return self.legacy_resource

    @router.route("/", branch=True, methods=["GET", "HEAD"])
    def static(self, request: Any) -> Any:
        return _StaticFiles(str(self.static_dir))

    @router.handle_errors(AccountError)
    def account_errors(self, request: Any, failure: Any) -> bytes:
        error: AccountError = failure.value
        return self._error(request, error.code, error.message, error.status, error.retry_after)

    @router.handle_errors(InvalidPath)
    def path_errors(self, request: Any, failure: Any) -> bytes:
        return self._error(request, "invalid_path", str(failure.value), 400)

    @router.handle_errors(ObjectTooLarge)
    def size_errors(self, request: Any, failure: Any) -> bytes:
        return self._error(request, "body_too_large", "the object is too large", 413)

    @router.handle_errors(InvalidInput)
    def input_errors(self, request: Any, failure: Any) -> bytes:
        return self._error(request, "invalid_request", str(failure.value), 400)

    @router.handle_errors(ObjectNotFound)
    def missing_errors(self, request: Any, failure: Any) -> bytes:
        return self._error(request, "not_found", "no object at this path", 404)

    @router.handle_errors(VersionConflict)
    def conflict_errors(self, request: Any, failure: Any) -> bytes:
        return self._error(request, "version_conflict", "the object is not at the expected version", 412)

    @router.handle_errors(NotFound)
    def route_not_found(self, request: Any, failure: Any) -> bytes:
        return self._error(request, "not_found", "no such route", 404)

    @router.handle_errors(MethodNotAllowed)
    def method_not_allowed(self, request: Any, failure: Any) -> bytes:
        valid = sorted(getattr(failure.value, "valid_methods", None) or [])
        if valid:  # RFC 9110 §15.5.6: a 405 lists the methods the resource does take
            request.setHeader(b"Allow", ", ".join(valid).encode("ascii"))
        return self._error(request, "method_not_allowed", "this route does not take that method", 405)

    @router.handle_errors(Exception)
    def errors(self, request: Any, failure: Any) -> bytes:
        return self._error(request, "internal", "internal error", 500)


__all__ = ["MAX_OBJECT_BYTES", "WebApp", "b64", "body_limit_for", "client_ip"]
