"""JSON errors everywhere, security headers, body limits, and the OpenAPI document matching Klein's routes."""

from __future__ import annotations

import json
import re

import pytest
import pytest_twisted
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from mailiverse.web.app import WebApp
from mailiverse.web.body import ACCOUNT_JSON_BYTES
from mailiverse.web.headers import SECURITY_HEADERS
from mailiverse.web.intake import BoundedRequest
from tests.support.webapi import Api


def _klein_routes() -> set[tuple[str, str]]:
    routes = set()
    for rule in WebApp.router.url_map.iter_rules():
        if rule.endpoint in (
            "api_not_found",
            "api_not_found_branch",
            "static",
            "static_branch",
        ) or not rule.rule.startswith("/api/"):
            continue
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        for method in rule.methods or ():
            if method not in ("HEAD", "OPTIONS"):
                routes.add((path, method.lower()))
    return routes


@pytest_twisted.ensureDeferred
async def test_openapi_matches_routes(api: Api) -> None:
    """Every Klein API route (path and method) is in /api/openapi.json and the document lists no other."""
    reply = await api.client().call("GET", "/api/openapi.json", auth=None)
    document = reply.json()
    assert document["openapi"].startswith("3.1")
    documented = {(path, method) for path, item in document["paths"].items() for method in item}
    assert documented == _klein_routes()
    assert len(documented) >= 17


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/api/nothing-here", 404, "not_found"),
        ("POST", "/api/health", 405, "method_not_allowed"),
        ("PATCH", "/api/store/Cache/x", 405, "method_not_allowed"),
        ("GET", "/api/login/start", 405, "method_not_allowed"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_routing_errors_are_json(api: Api, method: str, path: str, status: int, code: str) -> None:
    """Unknown routes and wrong methods answer JSON with a stable code and security headers."""
    reply = await api.client().call(method, path, auth=None)
    assert reply.status == status
    assert reply.json()["error"] == code
    assert reply.header("Content-Type") == "application/json"
    for name in SECURITY_HEADERS:
        assert reply.header(name.decode()) is not None
    if status == 405:
        allowed = {m.strip() for m in (reply.header("Allow") or "").split(",")}
        assert allowed and method not in allowed


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b"{not json", "application/json", 400, "malformed_json"),
        (b"[1, 2]", "application/json", 400, "malformed_json"),
        (b'{"user": "a", "user": "b"}', "application/json", 400, "malformed_json"),
        (b'{"user": NaN}', "application/json", 400, "malformed_json"),
        (b"\xff\xfe", "application/json", 400, "malformed_json"),
        (b'{"user": "alice"}', "text/plain", 415, "unsupported_media_type"),
        (b'{"user": "' + b"a" * (ACCOUNT_JSON_BYTES + 10) + b'"}', "application/json", 413, "body_too_large"),
        (b'{"user": 5}', "application/json", 400, "invalid_request"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_malformed_bodies(api: Api, body: bytes, content_type: str, status: int, code: str) -> None:
    """Malformed, wrongly typed or oversized JSON bodies get a JSON error with a stable code."""
    reply = await api.client().call(
        "POST", "/api/login/start", data=body, headers={"Content-Type": content_type}, auth=None
    )
    assert reply.status == status
    assert reply.json()["error"] == code


@pytest_twisted.ensureDeferred
async def test_health_has_security_headers(api: Api) -> None:
    """A normal response carries CSP, HSTS and the other security headers."""
    reply = await api.client().call("GET", "/api/health", auth=None)
    assert reply.json()["status"] == "ok"
    assert reply.header("Strict-Transport-Security") is not None
    assert "frame-ancestors 'none'" in (reply.header("Content-Security-Policy") or "")


def _raw_request(site_app: WebApp, request_bytes: bytes) -> tuple[bytes, BoundedRequest | None]:
    site = site_app.site()
    channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5555))
    transport = StringTransport()
    channel.makeConnection(transport)
    channel.dataReceived(request_bytes)
    return transport.value(), None


def test_site_drops_oversized_declared_body(api: Api) -> None:
    """The Site refuses a body whose Content-Length exceeds the route's cap without storing it."""
    app = api.app
    head = b"POST /api/login/start HTTP/1.1\r\nHost: h.example\r\nContent-Type: application/json\r\n"
    size = ACCOUNT_JSON_BYTES + 1
    output, _ = _raw_request(app, head + b"Content-Length: %d\r\n\r\n" % size + b"a" * size)
    assert b" 413 " in output.split(b"\r\n", 1)[0]
    assert b'"body_too_large"' in output


def test_site_drops_oversized_chunked_body(api: Api) -> None:
    """A chunked body that grows past the cap is dropped and answered with 413."""
    app = api.app
    head = (
        b"POST /api/login/start HTTP/1.1\r\nHost: h.example\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"a" * 60000
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(4)) + b"0\r\n\r\n"
    output, _ = _raw_request(app, head + body)
    assert b" 413 " in output.split(b"\r\n", 1)[0]


def test_site_accepts_body_within_cap(api: Api) -> None:
    """A small body passes the Site and reaches the route, whose own field check answers (not the Site's 413)."""
    app = api.app
    payload = json.dumps({"user": 5}).encode()
    head = b"POST /api/login/start HTTP/1.1\r\nHost: h.example\r\nContent-Type: application/json\r\n"
    output, _ = _raw_request(app, head + b"Content-Length: %d\r\n\r\n" % len(payload) + payload)
    assert b" 400 " in output.split(b"\r\n", 1)[0]
    assert b'"invalid_request"' in output and b"the field 'user'" in output
