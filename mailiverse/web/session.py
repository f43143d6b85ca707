"""What every authenticated route checks first: the session (bearer token or cookie), CSRF, and the live account.

``RouteBase`` holds the app's collaborators for the route classes in ``mailiverse.web.routes``
and gives them these checks; ``WebApp`` builds on it.
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twisted.web.resource import IResource

from mailiverse.accounts.directory import KeyDirectory
from mailiverse.accounts.groups import GroupService
from mailiverse.accounts.service import AccountService
from mailiverse.auth.devices import device_cookie
from mailiverse.auth.ratelimit import IRateLimits
from mailiverse.auth.sessions import SESSION_COOKIE, SessionRecord
from mailiverse.federation.discovery import Discovery
from mailiverse.store.db import Database
from mailiverse.store.homes import Homes
from mailiverse.store.users import User, get_user_txn
from mailiverse.submission import Submission
from mailiverse.web.cors import allows_cookieless_login, is_cross_origin
from mailiverse.web.errors import ApiError

if TYPE_CHECKING:
    from mailiverse.web.routes.aliases import AliasSettings

_STATE_CHANGING = frozenset({b"POST", b"PUT", b"DELETE", b"PATCH"})


class RouteBase:
    """The collaborators every route class reads, and the session checks they share."""

    hostname: str
    domains: tuple[str, ...]
    tls: bool
    static_dir: Path
    database: Database
    #: Where each account's objects are: ``database`` alone, or the homes of a metabase (store/homes.py).
    homes: Homes
    accounts: AccountService
    submission: Submission
    max_message_size: int
    legacy_resource: IResource | None
    #: The MTA-STS policy text (RFC 8461) served at /.well-known/mta-sts.txt, or None.
    mta_sts_policy: str | None
    #: The storage quota of accounts without their own (``--default-quota``), in bytes.
    default_quota: int
    #: The address hasher and alias limits (``routes/aliases.py``); None: no alias directory (no address key).
    alias_settings: AliasSettings | None
    #: The key directory and its transparency log (``routes/keys.py``).
    key_directory: KeyDirectory
    #: Group keys and their members (``routes/groups.py``).
    groups: GroupService
    #: Other domains' appliances and their key directories (``routes/remote.py``); None: not looked up.
    remote_directory: Discovery | None
    #: Makes the routes' rate limiters: in memory, or shared through the metabase.
    rate_limits: IRateLimits

    def check_origin(self, request: Any) -> None:
        """Refuse requests a browser marks as cross-site (login CSRF and cookie-authenticated writes), except a
        cookie-less SRP login from an https page (a move's new side, ``mailiverse.web.cors``: it sets no cookie)."""
        if allows_cookieless_login(request):
            return
        site = request.getHeader(b"sec-fetch-site")
        if site is not None and site.strip().lower() not in (b"same-origin", b"none"):
            raise ApiError("csrf_failed", "cross-site requests are refused", 403)
        origin = request.getHeader(b"origin")
        if origin is None:
            return
        host = (request.getHeader(b"host") or b"").strip().lower()
        parsed = urllib.parse.urlsplit(origin.decode("latin-1").strip().lower())
        if not host or parsed.netloc.encode("latin-1") != host or parsed.scheme not in ("https", "http"):
            raise ApiError("csrf_failed", "cross-origin requests are refused", 403)

    async def session_of(self, request: Any) -> SessionRecord:
        """The live session of the request, by bearer token or by cookie (+ CSRF on writes)."""
        authorization = request.getHeader(b"authorization")
        bearer = False
        token: str | None = None
        if authorization is not None:
            scheme, _, value = authorization.decode("latin-1").partition(" ")
            if scheme.lower() != "bearer":
                raise ApiError("unauthenticated", "use a Bearer token or the session cookie", 401)
            token, bearer = value.strip(), True
        else:
            token = request_cookie(request, SESSION_COOKIE)
        sessions = self.accounts.sessions
        record = await sessions.lookup(token)
        if record is None:
            raise ApiError("unauthenticated", "log in first (no live session)", 401)
        if not bearer and request.method in _STATE_CHANGING:
            # A browser session: the request must come from our own pages.
            self.check_origin(request)
            supplied = request.getHeader(b"x-csrf-token")
            if not sessions.check_csrf(record, supplied.decode("latin-1") if supplied is not None else None):
                raise ApiError("csrf_failed", "missing or wrong X-CSRF-Token", 403)
        return record

    async def user_of(self, request: Any) -> tuple[SessionRecord, User]:
        """The session and its live (not disabled) account."""
        record = await self.session_of(request)
        user = await self.database.run(get_user_txn, record.username)
        if user is None or user.disabled:
            raise ApiError("unauthenticated", "the account no longer exists", 401)
        return record, user

    def addresses(self, user: User) -> list[str]:
        """The account's addresses, as the API lists them."""
        return list(self.submission.addresses_of(user.name))

    def session_fields(self, request: Any, token: str, csrf: str) -> dict[str, Any]:
        """Open the session on the response (cookie) and in the body (token, CSRF token, lifetime)."""
        manager = self.accounts.sessions
        # Written whole (not with addCookie) so the attributes are exactly the ones SessionManager sets; never for
        # another origin's page (a move's cookie-less login: the token is its session).
        if not is_cross_origin(request):
            request.responseHeaders.addRawHeader(b"Set-Cookie", manager.cookie(token).encode("ascii"))
        return {"token": token, "csrf": csrf, "expires_in": int(manager.absolute_timeout)}

    @staticmethod
    def device_fields(request: Any, token: str | None) -> dict[str, Any]:
        """Hand the device its token: a cookie for browsers (after the session's), a field for native clients."""
        if token is None:
            return {}
        if not is_cross_origin(request):
            request.responseHeaders.addRawHeader(b"Set-Cookie", device_cookie(token).encode("ascii"))
        return {"device": token}


def request_cookie(request: Any, name: str) -> str | None:
    """The value of cookie ``name``, or None."""
    cookie = request.getCookie(name.encode("ascii"))
    return cookie.decode("latin-1") if cookie is not None else None


__all__ = ["RouteBase", "request_cookie"]
