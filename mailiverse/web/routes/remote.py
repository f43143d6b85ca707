"""Other appliances' key directories, fetched for this appliance's logged-in clients (docs/e2e.md §3).

- ``GET /api/remote/keys/{address}``: how the address's domain announces its appliance, and that appliance's
  key answer for the address, verbatim (the client checks its signatures and proofs against the domain's log
  key, pinned on first use). 404 ``no_appliance``: the domain has none (mail to it is ordinary mail).
- ``GET /api/remote/log/consistency?domain=&first=&second=``: that appliance's consistency proof, verbatim.

Rate-limited per account: each lookup may cost the appliance a DNS query and an HTTPS request elsewhere.
"""

from __future__ import annotations

from typing import Any

from mailiverse.auth.ratelimit import Budget, Decision, IRateLimiter
from mailiverse.federation.discovery import (
    Discovery,
    NoAppliance,
    RemoteBadRange,
    RemoteNotFound,
    RemoteUnavailable,
)
from mailiverse.web.errors import ApiError, json_response
from mailiverse.web.routing import router
from mailiverse.web.session import RouteBase

#: Lookups elsewhere one account may ask for: a burst of 60, then one a second.
REMOTE_LOOKUPS = Budget(attempts=60, period=60.0)
_MAX_ADDRESS = 254
_MAX_DOMAIN = 253


class RemoteRoutes(RouteBase):
    """The appliance as its clients' way to other appliances' directories."""

    _remote_lookups: IRateLimiter | None = None

    async def _checked_user(self, request: Any) -> None:
        _record, user = await self.user_of(request)
        if self._remote_lookups is None:
            self._remote_lookups = self.rate_limits.limiter("remote-lookups", REMOTE_LOOKUPS)
        decision: Decision = await self._remote_lookups.spend(user.name)
        if not decision.allowed:
            raise ApiError(
                "rate_limited", "too many lookups elsewhere; try again later", 429, decision.retry_after_seconds
            )

    def _directory(self) -> Discovery:
        if self.remote_directory is None:
            raise ApiError("no_appliance", "this appliance does not look up other appliances", 404)
        return self.remote_directory

    def _foreign(self, domain: str) -> str:
        domain = domain.strip().lower().rstrip(".")
        if not domain or len(domain) > _MAX_DOMAIN or any(c.isspace() or c in "/?#@:" for c in domain):
            raise ApiError("invalid_request", "not a domain name")
        if domain in self.domains:
            raise ApiError("invalid_request", f"{domain} is served here: use /api/keys")
        return domain

    @router.route("/api/remote/keys/<address>", methods=["GET"])
    async def remote_key(self, request: Any, address: str) -> bytes:
        await self._checked_user(request)
        if len(address) > _MAX_ADDRESS or address.count("@") != 1 or not address.partition("@")[0]:
            raise ApiError("invalid_request", "not an e-mail address")
        domain = self._foreign(address.rpartition("@")[2])
        try:
            announcement, answer = await self._directory().key_answer(address)
        except NoAppliance:
            raise ApiError("no_appliance", f"{domain} announces no mailiverse appliance", 404) from None
        except RemoteNotFound:
            raise ApiError("not_found", f"the appliance of {domain} has no key for that address", 404) from None
        except RemoteUnavailable as error:
            raise ApiError("remote_unavailable", f"the appliance of {domain}: {error}", 502) from None
        return json_response(request, {"domain": domain, "discovery": announcement.to_json(), "answer": answer})

    @router.route("/api/remote/log/consistency", methods=["GET"])
    async def remote_consistency(self, request: Any) -> bytes:
        await self._checked_user(request)
        domain = self._foreign(_query(request, "domain"))
        first, second = _size(_query(request, "first")), _size(_query(request, "second"))
        try:
            answer = await self._directory().consistency(domain, first, second)
        except NoAppliance:
            raise ApiError("no_appliance", f"{domain} announces no mailiverse appliance", 404) from None
        except RemoteBadRange as error:
            raise ApiError("bad_range", str(error), 400) from None
        except RemoteUnavailable as error:
            raise ApiError("remote_unavailable", f"the appliance of {domain}: {error}", 502) from None
        return json_response(request, answer)


def _query(request: Any, name: str) -> str:
    values = request.args.get(name.encode("ascii"))
    if not values or len(values) != 1:
        raise ApiError("invalid_request", f"give one {name}")
    try:
        return bytes(values[0]).decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError("invalid_request", f"{name} is not UTF-8") from None


def _size(value: str) -> int:
    if not value.isdigit() or len(value) > 15:
        raise ApiError("invalid_request", "first and second are log sizes (whole numbers)")
    return int(value)


__all__ = ["RemoteRoutes"]
