"""``/api/remote/...`` (docs/e2e.md §3) refuse what is not theirs to answer: no session, a local domain, a
malformed address or size; an appliance that looks nothing up elsewhere says so (``no_appliance``).
The answers relayed from a real other appliance are tests/e2e/test_federation.py's."""

from __future__ import annotations

import pytest_twisted

from tests.support.webapi import Api, signed_in


@pytest_twisted.ensureDeferred
async def test_remote_routes_refuse_what_is_not_theirs(api: Api) -> None:
    alice = await signed_in(api, "alice", "remote routes password", 0)
    anonymous = await api.client().call("GET", "/api/remote/keys/bob@b.example", auth=None)
    assert anonymous.status == 401
    cases = [
        ("/api/remote/keys/alice@example.org", 400, "served here"),
        ("/api/remote/keys/not-an-address", 400, "address"),
        ("/api/remote/keys/a@b@c.example", 400, "address"),
        ("/api/remote/log/consistency?domain=b.example&first=x&second=2", 400, "sizes"),
        ("/api/remote/log/consistency?domain=b.example&first=1", 400, "second"),
        ("/api/remote/log/consistency?domain=b/x&first=1&second=2", 400, "domain"),
        ("/api/remote/keys/bob@b.example", 404, "does not look up"),
    ]
    for path, status, words in cases:
        reply = await alice.call("GET", path)
        assert reply.status == status, (path, reply.body)
        assert words in reply.json()["message"], (path, reply.json())
