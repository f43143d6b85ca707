"""The appliance's web service: a Klein app object holding its collaborators,
serving the JSON API and the static client.

``WebApp`` is the route classes of ``mailiverse.web.routes`` put together over one router
(``mailiverse.web.routing``), with the error mapping of ``mailiverse.web.errors``. The rules
(sign-up, SRP, sessions, sending) live in ``mailiverse.accounts`` and ``mailiverse.submission``;
routes only map HTTP to them. Errors are JSON ``{"error", "message"}`` with a stable code
everywhere, including 404, 405 and malformed bodies. The API is described in ``docs/api.md``
and served as OpenAPI 3.1 at ``/api/openapi.json``. Build it with ``build_web_app``
(``mailiverse.web.wiring``), as the appliance and the tests do.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from twisted.web.resource import IResource, Resource
from twisted.web.server import Site

from mailiverse.accounts.directory import KeyDirectory
from mailiverse.accounts.groups import GroupService
from mailiverse.accounts.service import AccountService
from mailiverse.auth.forwarded import NO_PROXIES, TrustedProxies
from mailiverse.auth.ratelimit import IRateLimits, MemoryRateLimits
from mailiverse.config import DEFAULT_QUOTA_BYTES
from mailiverse.delivery.rspamd import RspamdClient
from mailiverse.federation.discovery import Discovery
from mailiverse.store.db import Database
from mailiverse.store.homes import Homes
from mailiverse.store.keylog import KeyLog
from mailiverse.submission import Submission
from mailiverse.web.assets import webclient_dir
from mailiverse.web.body import body_limit_for, is_oversized
from mailiverse.web.cors import apply_cors
from mailiverse.web.errors import ErrorHandlers
from mailiverse.web.headers import apply_security_headers
from mailiverse.web.intake import BoundedRequest, WebBodyGate
from mailiverse.web.routes.account import AccountRoutes
from mailiverse.web.routes.aliases import AliasRoutes, AliasSettings
from mailiverse.web.routes.auth import AuthRoutes
from mailiverse.web.routes.groups import GroupRoutes
from mailiverse.web.routes.keys import KeyRoutes
from mailiverse.web.routes.moves import MoveRoutes
from mailiverse.web.routes.moving import MovingRoutes
from mailiverse.web.routes.passkeys import PasskeyRoutes
from mailiverse.web.routes.public import PublicRoutes
from mailiverse.web.routes.remote import RemoteRoutes
from mailiverse.web.routes.screener import ScreenerRoutes
from mailiverse.web.routes.sealed import SealedSendRoutes
from mailiverse.web.routes.send import SendRoutes
from mailiverse.web.routes.spam import SpamRoutes
from mailiverse.web.routes.store import StoreRoutes
from mailiverse.web.routing import router
from mailiverse.web.site import WebSite


class _Secured(Resource):
    """Puts the security headers on every response, then lets the Klein resource render."""

    isLeaf = True

    def __init__(self, inner: IResource, tls: bool) -> None:
        super().__init__()
        self._inner = inner
        self._tls = tls

    def render(self, request: Any) -> Any:
        apply_security_headers(request, tls=self._tls)
        preflight = apply_cors(request)  # a move's new side (mailiverse.web.cors): cookie-less requests only
        if preflight is not None:
            return preflight
        if is_oversized(request):
            # The body was dropped on arrival (BoundedRequest); no route may see a truncated one.
            request.setHeader(b"Connection", b"close")
            return _early_error(request, 413, "body_too_large", "the request body is larger than this route accepts")
        if not _url_is_utf8(request):
            # Klein would answer a text/html 400 and log a traceback; every other error here is JSON.
            return _early_error(request, 400, "invalid_request", "the URL is not valid UTF-8")
        return self._inner.render(request)


def _early_error(request: Any, status: int, code: str, message: str) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"application/json")
    request.setHeader(b"Cache-Control", b"no-store")
    return json.dumps({"error": code, "message": message}).encode()


def _url_is_utf8(request: Any) -> bool:
    """Whether the host name and the (already unquoted) path segments are UTF-8, as routing needs."""
    try:
        request.getRequestHostname().decode("utf-8")
        b"/".join([*request.prepath, *request.postpath]).decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class WebApp(
    AuthRoutes,
    AccountRoutes,
    PasskeyRoutes,
    GroupRoutes,
    StoreRoutes,
    MoveRoutes,
    MovingRoutes,
    SpamRoutes,
    AliasRoutes,
    ScreenerRoutes,
    KeyRoutes,
    SendRoutes,
    SealedSendRoutes,
    RemoteRoutes,
    PublicRoutes,
    ErrorHandlers,
):
    """The HTTPS API and static client, over an ``AccountService``, the database and the ``Submission`` service."""

    router = router

    def __init__(
        self,
        *,
        hostname: str,
        domains: tuple[str, ...],
        database: Database,
        accounts: AccountService,
        submission: Submission,
        tls: bool = True,
        static_dir: Path | None = None,
        max_message_size: int = 50 * 1024 * 1024,
        legacy_resource: IResource | None = None,
        mta_sts_policy: str | None = None,
        trusted_proxies: TrustedProxies = NO_PROXIES,
        default_quota: int = DEFAULT_QUOTA_BYTES,
        spool_dir: Path | None = None,
        spam_filter: RspamdClient | None = None,
        alias_settings: AliasSettings | None = None,
        key_log: KeyLog | None = None,
        discovery: Discovery | None = None,
        rate_limits: IRateLimits | None = None,
        homes: Homes | None = None,
    ) -> None:
        self.hostname = hostname
        self.domains = tuple(domains)
        self.database = database
        #: Where each account's objects are (store/homes.py): ``database`` alone, or the homes of a metabase.
        self.homes = homes if homes is not None else Homes.single(database)
        self.accounts = accounts
        self.submission = submission
        self.tls = tls
        self.static_dir = static_dir if static_dir is not None else webclient_dir()
        self.max_message_size = max_message_size
        self.legacy_resource = legacy_resource
        self.mta_sts_policy = mta_sts_policy
        self.default_quota = default_quota
        #: Where request bodies too large for memory go, encrypted: the data directory's ``tmp/``.
        self.spool_dir = spool_dir
        self.spam_filter = spam_filter
        self.alias_settings = alias_settings
        # Without a log key of its own (tests of the API alone) the log signs with a key made now.
        self.key_log = key_log if key_log is not None else KeyLog(Ed25519PrivateKey.generate())
        self.key_directory = KeyDirectory(database, self.key_log)
        self.groups = GroupService(database, self.key_log, submission.addresses_of, homes=self.homes)
        #: Believed on the plain-HTTP site only: a TLS passthrough proxy cannot add headers, a client can.
        self.trusted_proxies = trusted_proxies if not tls else NO_PROXIES
        self.remote_directory = discovery
        #: Where the routes' limiters keep their buckets: memory, or the metabase every front end shares.
        self.rate_limits = rate_limits if rate_limits is not None else MemoryRateLimits()

    def plain(self, trusted_proxies: TrustedProxies = NO_PROXIES) -> WebApp:
        """The same app with the same collaborators for a plain-HTTP endpoint behind a TLS proxy (no HSTS),
        believing the X-Forwarded-For/Forwarded of peers in ``trusted_proxies`` (``--trusted-proxy``)."""
        return WebApp(
            hostname=self.hostname,
            domains=self.domains,
            database=self.database,
            homes=self.homes,
            accounts=self.accounts,
            submission=self.submission,
            tls=False,
            static_dir=self.static_dir,
            max_message_size=self.max_message_size,
            legacy_resource=self.legacy_resource,
            mta_sts_policy=self.mta_sts_policy,
            trusted_proxies=trusted_proxies,
            default_quota=self.default_quota,
            spool_dir=self.spool_dir,
            spam_filter=self.spam_filter,
            alias_settings=self.alias_settings,
            key_log=self.key_log,
            discovery=self.remote_directory,
            rate_limits=self.rate_limits,
        )

    def resource(self) -> IResource:
        """The root resource: every route, with security headers on every response."""
        return _Secured(self.router.resource(), self.tls)

    def site(self) -> Site:
        """A ``Site`` whose requests keep their bodies in the encrypted spool, within each route's cap for a
        request whose credential verifies and a few KiB otherwise (see ``mailiverse.web.intake``), with the
        access log by route template and the trusted proxies of this app (``WebSite``)."""
        if self.spool_dir is None:
            raise ValueError("WebApp.site() needs spool_dir (the data directory's tmp/) for request bodies")
        gate = WebBodyGate(self, body_limit_for(self.max_message_size))
        directory, https = self.spool_dir, self.tls

        class _Request(BoundedRequest):
            body_gate = staticmethod(gate)
            spool_dir = directory
            tls = https

        # No route takes form data (the API is JSON, the legacy protocol puts raw bodies), so bodies
        # are never parsed into ``args``: parsing costs memory, and Twisted answers a malformed
        # multipart body with its own bare 400 before the app can (415, in JSON).
        return WebSite(
            self.resource(),
            requestFactory=_Request,
            parsePOSTFormSubmission=False,
            trusted_proxies=self.trusted_proxies,
        )


__all__ = ["WebApp"]
