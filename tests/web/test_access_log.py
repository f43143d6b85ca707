"""The HTTP access log names the route template, status, size and duration: never the path, the query,
the client's address or its headers.

The app's Site is served on a real socket on 127.0.0.1 and every log event is captured, so what is
checked is what the appliance writes to its log.
"""

from __future__ import annotations

import re
from typing import Any

import pytest_twisted
from twisted.logger import formatEvent

from tests.support.logs import captured
from tests.support.loopback_http import serving
from tests.support.webapi import Api

PASSWORD = "a long enough password"
CANARIES = (
    "canary.person",
    "canary-query",
    "canary-folder",
    "canary-static",
    "canary-unknown",
    "canary-agent",
    "canary-referer",
    "198.51.100.77",
    "canary-resource",
)
HEADERS = {
    "User-Agent": "canary-agent/1.0",
    "Referer": "https://canary-referer.example/",
    "X-Forwarded-For": "198.51.100.77",
}


def access_lines(events: list[dict[str, Any]]) -> list[str]:
    return [formatEvent(e) for e in events if e.get("log_namespace") == "mailiverse.accesslog"]


@pytest_twisted.ensureDeferred
async def test_access_log_names_templates_not_user_data(api: Api) -> None:
    """Looked-up addresses, store paths, queries, user agents, referers and client addresses stay out of
    the log; each request is one line of method, route template, status, size and duration."""
    client = api.client()
    assert (await client.signup("alice", PASSWORD)).status == 201
    assert (await client.login("alice", PASSWORD)).status == 200
    bearer = {**HEADERS, "Authorization": f"Bearer {client.token}"}
    with captured() as events:
        async with serving(api.app.site()) as http:
            key = await http.request("GET", "/api/keys/canary.person@example.org?q=canary-query", headers=bearer)
            put = await http.request("PUT", "/api/store/Mail/canary-folder/x?import=canary-query", headers=bearer)
            got = await http.request("GET", "/api/store/Mail/canary-folder/x", headers=bearer)
            listed = await http.request("GET", "/api/store?prefix=Mail/canary-folder/", headers=bearer)
            static = await http.request("GET", "/canary-static/canary.person@example.org", headers=HEADERS)
            unknown = await http.request("GET", "/api/canary-unknown/x", headers=HEADERS)
            legacy = await http.request("GET", "/Mailiverse/StoreGet?Resource=canary-resource", headers=HEADERS)
            not_utf8 = await http.request("GET", "/api/keys/canary.person%ff", headers=bearer)
            start = await http.request("POST", "/api/login/start", headers=HEADERS, json_body={"user": "alice"})
    assert (key.status, put.status, listed.status, static.status, unknown.status) == (404, 400, 200, 404, 404)
    assert (got.status, legacy.status, not_utf8.status, start.status) == (404, 404, 400, 200)
    everything = [formatEvent(e) for e in events] + [repr(e) for e in events]
    leaked = [(canary, text) for text in everything for canary in CANARIES if canary in text]
    assert not leaked, leaked
    lines = access_lines(events)
    expected = [
        "GET /api/keys/<address> 404",
        "PUT /api/store/<path> 400",
        "GET /api/store/<path> 404",
        "GET /api/store 200",
        "GET /* 404",
        "GET /api/* 404",
        "GET /Mailiverse/* 404",
        "GET <unmatched> 400",
        "POST /api/login/start 200",
    ]
    assert [" ".join(line.split()[:3]) for line in lines] == expected, lines
    assert all(re.fullmatch(r"[A-Z]+ \S+ \d{3} \d+B \d+ms", line) for line in lines), lines


@pytest_twisted.ensureDeferred
async def test_unknown_methods_and_routes_are_placeholders(api: Api) -> None:
    """A method outside HTTP's usual ones and a path no route has are logged as fixed placeholders."""
    with captured() as events:
        async with serving(api.app.site()) as http:
            brew = await http.request("BREW", "/api/keys/canary.person@example.org", headers=HEADERS)
            post = await http.request("POST", "/canary-static/x", headers=HEADERS)
    assert (brew.status, post.status) == (405, 405)
    lines = access_lines(events)
    assert [" ".join(line.split()[:3]) for line in lines] == ["OTHER /api/* 405", "POST <unmatched> 405"]
    assert not [text for e in events for text in (formatEvent(e), repr(e)) if "canary" in text]
