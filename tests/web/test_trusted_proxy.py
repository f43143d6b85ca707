"""Behind a TLS proxy (``--web-plain`` with ``--trusted-proxy``), each forwarded client has its own
rate-limit bucket; from any other peer the forwarding headers are ignored.

The plain-HTTP Site is served on a real socket on 127.0.0.1, so the peer is 127.0.0.1: trusted when
the trusted networks hold it, a stranger otherwise. The sign-up budget per address is what is
counted (a refused name still spends it: 400 while it lasts, then 429).
"""

from __future__ import annotations

from typing import Any

import pytest_twisted

from mailiverse.auth.forwarded import TrustedProxies
from tests.support.loopback_http import LoopbackClient, serving
from tests.support.webapi import Api

PASSWORD = "a long enough password"
LOOPBACK_PROXY = TrustedProxies.parse(["127.0.0.0/8"])
ELSEWHERE_PROXY = TrustedProxies.parse(["10.0.0.0/8", "2001:db8:ffff::/48"])


def _refused_name(api: Api) -> dict[str, Any]:
    body = api.client().signup_body("alice", PASSWORD)
    body["user"] = "root"  # reserved: refused after the budget is spent, nothing is created
    return body


async def _signup(http: LoopbackClient, body: dict[str, Any], headers: dict[str, str]) -> int:
    return (await http.request("POST", "/api/signup", headers=headers, json_body=body)).status


async def _spend(http: LoopbackClient, api: Api, headers: dict[str, str]) -> list[int]:
    """Spend one bucket's budget with ``headers`` on every request; the statuses, all 400 if it was full."""
    body = _refused_name(api)
    return [await _signup(http, body, headers) for _ in range(api.accounts.policy.per_address.attempts)]


@pytest_twisted.ensureDeferred
async def test_forwarded_clients_get_their_own_buckets(open_api: Api) -> None:
    """From a trusted proxy, each X-Forwarded-For client spends its own budget, not the proxy's."""
    body = _refused_name(open_api)
    async with serving(open_api.app.plain(LOOPBACK_PROXY).site()) as http:
        first = {"X-Forwarded-For": "198.51.100.7"}
        assert set(await _spend(http, open_api, first)) == {400}
        assert await _signup(http, body, first) == 429
        assert await _signup(http, body, {"X-Forwarded-For": "198.51.100.8"}) == 400
        # the proxy's own requests (no header) are a third client
        assert await _signup(http, body, {}) == 400


@pytest_twisted.ensureDeferred
async def test_untrusted_peer_headers_are_ignored(open_api: Api) -> None:
    """From a peer outside the trusted networks, X-Forwarded-For and Forwarded change nothing: one bucket."""
    body = _refused_name(open_api)
    async with serving(open_api.app.plain(ELSEWHERE_PROXY).site()) as http:
        statuses = [
            await _signup(http, body, {"X-Forwarded-For": f"198.51.100.{n}", "Forwarded": f"for=203.0.113.{n}"})
            for n in range(open_api.accounts.policy.per_address.attempts)
        ]
        assert set(statuses) == {400}
        assert await _signup(http, body, {"X-Forwarded-For": "192.0.2.1"}) == 429
        assert await _signup(http, body, {"Forwarded": 'for="[2001:db8::1]"'}) == 429


@pytest_twisted.ensureDeferred
async def test_https_site_ignores_forwarding_headers(open_api: Api) -> None:
    """The HTTPS app's Site believes no forwarding header, even from loopback."""
    body = _refused_name(open_api)
    async with serving(open_api.app.site()) as http:
        for n in range(open_api.accounts.policy.per_address.attempts):
            assert await _signup(http, body, {"X-Forwarded-For": f"198.51.100.{n}"}) == 400
        assert await _signup(http, body, {"X-Forwarded-For": "192.0.2.1"}) == 429


@pytest_twisted.ensureDeferred
async def test_spoofed_chain_counts_the_client_the_proxy_saw(open_api: Api) -> None:
    """Addresses a client writes into X-Forwarded-For itself stand left of the proxy's: changing them
    buys no new budget."""
    body = _refused_name(open_api)
    async with serving(open_api.app.plain(LOOPBACK_PROXY).site()) as http:
        for n in range(open_api.accounts.policy.per_address.attempts):
            spoofed = {"X-Forwarded-For": f"203.0.113.{n}, 198.51.100.7"}
            assert await _signup(http, body, spoofed) == 400
        assert await _signup(http, body, {"X-Forwarded-For": "192.0.2.99, 198.51.100.7"}) == 429
        assert await _signup(http, body, {"Forwarded": "for=192.0.2.99, for=198.51.100.7"}) == 429


@pytest_twisted.ensureDeferred
async def test_malformed_forwarding_counts_as_the_proxy(open_api: Api) -> None:
    """A forwarded hop that names no valid address is not believed: the request counts as the proxy."""
    body = _refused_name(open_api)
    async with serving(open_api.app.plain(LOOPBACK_PROXY).site()) as http:
        malformed = [
            {"X-Forwarded-For": "not-an-address"},
            {"X-Forwarded-For": "198.51.100.7:4711"},
            {"Forwarded": "for=unknown"},
            {"Forwarded": "for=_hidden"},
            {"Forwarded": 'for="[2001:db8::1"'},
            {"Forwarded": "for=2001:db8::1"},
            {"X-Forwarded-For": "198.51.100.7", "Forwarded": "for=198.51.100.8"},
        ]
        attempts = open_api.accounts.policy.per_address.attempts
        statuses = [await _signup(http, body, malformed[n % len(malformed)]) for n in range(attempts)]
        assert set(statuses) == {400}
        assert await _signup(http, body, {}) == 429
        assert await _signup(http, body, {"X-Forwarded-For": "198.51.100.7"}) == 400


@pytest_twisted.ensureDeferred
async def test_forwarded_ipv6_clients_are_grouped_by_64(open_api: Api) -> None:
    """A forwarded IPv6 client counts by its /64, as a direct one does; RFC 7239 brackets and ports are read."""
    body = _refused_name(open_api)
    async with serving(open_api.app.plain(LOOPBACK_PROXY).site()) as http:
        attempts = open_api.accounts.policy.per_address.attempts
        for n in range(attempts):
            if n % 2:
                headers = {"X-Forwarded-For": f"2001:db8:1:2::{n:x}"}
            else:
                headers = {"Forwarded": f'for="[2001:db8:1:2:{n:x}::1]:4711";proto=https'}
            assert await _signup(http, body, headers) == 400
        assert await _signup(http, body, {"X-Forwarded-For": "2001:db8:1:2:ffff::1"}) == 429
        assert await _signup(http, body, {"X-Forwarded-For": "2001:db8:1:3::1"}) == 400
