"""CORS for a move's new side (mailiverse/web/cors.py, docs/moving.md "In the web client"): preflights answered
only on the routes a move needs and only for https origins, a cookie-less SRP login from another origin that sets
no cookie, bearer requests readable cross-origin; a cross-origin request with the session cookie still refused,
and never Access-Control-Allow-Credentials."""

from __future__ import annotations

import pytest
import pytest_twisted

from tests.support.webapi import Api, ApiClient, Reply

PASSWORD = "a long enough password for cors"
OLD = "https://old.example:8443"


def _preflight_headers(method: str, origin: str = OLD) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization, content-type",
        "Sec-Fetch-Site": "cross-site",
    }


def _no_credentials(reply: Reply) -> None:
    assert reply.header("Access-Control-Allow-Credentials") is None
    assert reply.header("Set-Cookie") is None


async def _alice(api: Api) -> ApiClient:
    client = api.client()
    assert (await client.signup("alice", PASSWORD)).status == 201
    assert (await client.login("alice", PASSWORD)).status == 200
    return client


@pytest.mark.parametrize(
    ("path", "method", "methods"),
    [
        ("/api/login/start", "POST", "POST"),
        ("/api/login/finish", "POST", "POST"),
        ("/api/account", "GET", "GET"),
        ("/api/account/digests", "GET", "GET"),
        ("/api/account/brought-keys", "POST", "GET, POST"),
        ("/api/account/move", "POST", "GET, POST"),
        ("/api/account/move/copied", "POST", "POST"),
        ("/api/store/Mail/In/a%20b", "POST", "GET, PUT, POST"),
        ("/api/store/Cache/x", "PUT", "GET, PUT, POST"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_preflight_answered_on_move_routes(api: Api, path: str, method: str, methods: str) -> None:
    """An https origin's preflight on a route a move needs: 204 with the origin, the route's methods, the two
    request headers, Vary: Origin, and no credentials."""
    reply = await api.client().call("OPTIONS", path, auth=None, headers=_preflight_headers(method))
    assert reply.status == 204, reply.body
    assert reply.header("Access-Control-Allow-Origin") == OLD
    assert reply.header("Access-Control-Allow-Methods") == methods
    assert reply.header("Access-Control-Allow-Headers") == "Authorization, Content-Type"
    assert reply.header("Vary") == "Origin"
    _no_credentials(reply)


@pytest.mark.parametrize(
    ("path", "method"),
    [
        ("/api/signup", "POST"),
        ("/api/send", "POST"),
        ("/api/keys", "POST"),
        ("/api/store", "GET"),
        ("/api/account/password", "POST"),
        ("/api/account", "DELETE"),
        ("/api/store/Cache/x", "DELETE"),
        ("/", "GET"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_no_cors_on_other_routes(api: Api, path: str, method: str) -> None:
    """Routes (or methods) a move does not need get no CORS header at all."""
    reply = await api.client().call("OPTIONS", path, auth=None, headers=_preflight_headers(method))
    assert reply.status != 204
    assert reply.header("Access-Control-Allow-Origin") is None
    assert reply.header("Access-Control-Allow-Methods") is None
    _no_credentials(reply)


@pytest.mark.parametrize(
    "origin", ["http://old.example", "null", "https://old.example/path", "ftp://old.example", "https://"]
)
@pytest_twisted.ensureDeferred
async def test_only_https_origins(api: Api, origin: str) -> None:
    """An http:// (or malformed, or opaque) origin gets no CORS answer."""
    reply = await api.client().call(
        "OPTIONS", "/api/login/start", auth=None, headers=_preflight_headers("POST", origin)
    )
    assert reply.header("Access-Control-Allow-Origin") is None
    _no_credentials(reply)
    login = await api.client().call(
        "POST", "/api/login/start", json_body={"user": "alice"}, auth=None, headers={"Origin": origin}
    )
    assert (login.status, login.json()["error"]) == (403, "csrf_failed")
    assert login.header("Access-Control-Allow-Origin") is None


@pytest_twisted.ensureDeferred
async def test_cookieless_cross_origin_login_and_bearer_requests(api: Api) -> None:
    """The whole new side of a move from another origin: SRP login without a cookie (none is set), then bearer
    requests, each answer readable by that origin and none with credentials."""
    await _alice(api)
    mover = api.client()
    cross = {"Origin": OLD, "Sec-Fetch-Site": "cross-site"}
    proof, login = await mover.proof("alice", PASSWORD)
    start_again = await mover.call("POST", "/api/login/start", json_body={"user": "alice"}, auth=None, headers=cross)
    assert start_again.status == 200
    assert start_again.header("Access-Control-Allow-Origin") == OLD
    # A proof from the same-origin start above, finished cross-origin.
    finish = await mover.call("POST", "/api/login/finish", json_body=proof, auth=None, headers=cross)
    assert finish.status == 200, finish.body
    assert finish.header("Access-Control-Allow-Origin") == OLD
    _no_credentials(finish)
    mover.token = finish.json()["token"]
    account = await mover.call("GET", "/api/account", headers=cross)
    assert account.status == 200
    assert account.header("Access-Control-Allow-Origin") == OLD
    stored = await mover.call("POST", "/api/store/Mail/In/x?modified_ms=1000", data=b"cipher", headers=cross)
    assert stored.status == 201, stored.body
    assert stored.header("Access-Control-Allow-Origin") == OLD
    digests = await mover.call("GET", "/api/account/digests", headers=cross)
    assert [o["path"] for o in digests.json()["objects"]] == ["Mail/In/x"]
    for reply in (account, stored, digests):
        _no_credentials(reply)
        assert reply.header("Vary") == "Origin"


@pytest_twisted.ensureDeferred
async def test_cross_origin_cookie_still_refused(api: Api) -> None:
    """A cross-origin request that carries the session cookie (and the CSRF token) is refused 403 csrf_failed,
    with no CORS header; so is a cross-origin login that carries a cookie."""
    client = await _alice(api)
    headers = {"Origin": OLD, "Sec-Fetch-Site": "cross-site"}
    for method, path in (("POST", "/api/store/Mail/In/y"), ("PUT", "/api/store/Cache/y")):
        reply = await client.call(method, path, data=b"x", auth="cookie", headers=headers)
        assert (reply.status, reply.json()["error"]) == (403, "csrf_failed")
        assert reply.header("Access-Control-Allow-Origin") is None
        _no_credentials(reply)
    login = await client.call(
        "POST",
        "/api/login/start",
        json_body={"user": "alice"},
        auth="cookie",
        headers=headers,
    )
    assert (login.status, login.json()["error"]) == (403, "csrf_failed")
    assert login.header("Access-Control-Allow-Origin") is None


@pytest_twisted.ensureDeferred
async def test_same_origin_login_keeps_its_cookie(api: Api) -> None:
    """The appliance's own page still gets its session cookie and no CORS header."""
    await api.client().signup("alice", PASSWORD)
    client = api.client()
    proof, _ = await client.proof("alice", PASSWORD)
    reply = await client.call(
        "POST", "/api/login/finish", json_body=proof, auth=None, headers={"Origin": "https://mail.example.org"}
    )
    assert reply.status == 200
    assert reply.header("Set-Cookie") is not None
    assert reply.header("Access-Control-Allow-Origin") is None
    assert reply.header("Vary") == "Origin"
