"""The store API: per-user isolation, paging, ETags and conditions, Mail/ read-only, path validation, size caps."""

from __future__ import annotations

import urllib.parse

import pytest
import pytest_twisted

from mailiverse.store.objects import put_object_txn
from mailiverse.store.users import get_user_txn
from tests.support.webapi import Api, ApiClient, signed_in

PASSWORD = "store password"


async def _user(api: Api, name: str, index: int) -> ApiClient:
    return await signed_in(api, name, PASSWORD, index)


@pytest_twisted.ensureDeferred
async def test_put_get_delete_with_versions(open_api: Api) -> None:
    """PUT creates version 1 (201), replaces with If-Match, GET returns bytes and ETag, DELETE removes."""
    client = await _user(open_api, "alice", 0)
    created = await client.call("PUT", "/api/store/Cache/one", data=b"first", headers={"If-None-Match": "*"})
    assert created.status == 201
    assert created.header("ETag") == '"1"'
    again = await client.call("PUT", "/api/store/Cache/one", data=b"x", headers={"If-None-Match": "*"})
    assert (again.status, again.json()["error"]) == (412, "version_conflict")
    stale = await client.call("PUT", "/api/store/Cache/one", data=b"x", headers={"If-Match": '"7"'})
    assert stale.status == 412
    replaced = await client.call("PUT", "/api/store/Cache/one", data=b"second", headers={"If-Match": '"1"'})
    assert (replaced.status, replaced.json()["version"]) == (200, 2)
    got = await client.call("GET", "/api/store/Cache/one")
    assert (got.status, got.body, got.header("ETag")) == (200, b"second", '"2"')
    assert got.header("Content-Type") == "application/octet-stream"
    unchanged = await client.call("GET", "/api/store/Cache/one", headers={"If-None-Match": '"2"'})
    assert unchanged.status == 304
    wrong_delete = await client.call("DELETE", "/api/store/Cache/one", headers={"If-Match": '"1"'})
    assert wrong_delete.status == 412
    deleted = await client.call("DELETE", "/api/store/Cache/one", headers={"If-Match": '"2"'})
    assert deleted.status == 200
    missing = await client.call("GET", "/api/store/Cache/one")
    assert (missing.status, missing.json()["error"]) == (404, "not_found")
    assert (await client.call("DELETE", "/api/store/Cache/one")).status == 404


@pytest_twisted.ensureDeferred
async def test_mail_is_server_written(open_api: Api) -> None:
    """Clients cannot PUT under Mail/, but can read and delete what the server put there."""
    client = await _user(open_api, "alice", 0)
    refused = await client.call("PUT", "/api/store/Mail/In/1_2", data=b"forged")
    assert (refused.status, refused.json()["error"]) == (403, "read_only_path")
    user = await open_api.database.run(get_user_txn, "alice")
    assert user is not None
    await open_api.database.transact(put_object_txn, user.id, "Mail/In/1_2", b"sealed")
    assert (await client.call("GET", "/api/store/Mail/In/1_2")).body == b"sealed"
    assert (await client.call("DELETE", "/api/store/Mail/In/1_2")).status == 200


@pytest_twisted.ensureDeferred
async def test_users_are_isolated(open_api: Api) -> None:
    """Bob can never read, list, overwrite or delete Alice's objects."""
    alice = await _user(open_api, "alice", 0)
    bob = await _user(open_api, "bob", 1)
    assert (await alice.call("PUT", "/api/store/Cache/secret", data=b"alice only")).status == 201
    assert (await bob.call("GET", "/api/store/Cache/secret")).status == 404
    listing = await bob.call("GET", "/api/store?prefix=")
    assert listing.json()["objects"] == []
    assert (await bob.call("DELETE", "/api/store/Cache/secret")).status == 404
    assert (await bob.call("PUT", "/api/store/Cache/secret", data=b"bob")).status == 201
    assert (await alice.call("GET", "/api/store/Cache/secret")).body == b"alice only"
    traversal = await bob.call("GET", "/api/store/..%2Falice%2FCache%2Fsecret")
    assert traversal.status in (400, 404)
    assert b"alice only" not in traversal.body


@pytest.mark.parametrize(
    "path",
    ["Cache/../x", "Cache/./x", "Cache//x", "Cache/%00x", "Cache/x%5Cy", "%2E%2E/x"],
)
@pytest_twisted.ensureDeferred
async def test_bad_paths_refused(open_api: Api, path: str) -> None:
    """Traversal, empty segments, control characters and backslashes are refused (400 invalid_path or 404)."""
    client = await _user(open_api, "alice", 0)
    reply = await client.call("PUT", "/api/store/" + path, data=b"x")
    assert reply.status in (400, 404)
    assert reply.json()["error"] in ("invalid_path", "not_found")
    assert (await client.call("GET", "/api/store?prefix=")).json()["objects"] == []


@pytest_twisted.ensureDeferred
async def test_listing_pages_by_name_and_newest(open_api: Api) -> None:
    """Listing pages through every object once, by name and newest first, with the next cursor."""
    client = await _user(open_api, "alice", 0)
    names = [f"Cache/item{i:02d}" for i in range(7)]
    for name in names:
        assert (await client.call("PUT", "/api/store/" + name, data=name.encode())).status == 201
    assert (await client.call("PUT", "/api/store/Other/x", data=b"x")).status == 201
    for order, expected in (("name", names), ("newest", list(reversed(names)))):
        seen: list[str] = []
        after = None
        while True:
            query = {"prefix": "Cache/", "limit": "3", "order": order}
            if after is not None:
                query["after"] = after
            page = (await client.call("GET", "/api/store?" + urllib.parse.urlencode(query))).json()
            seen += [o["path"] for o in page["objects"]]
            after = page["next"]
            if after is None:
                break
        assert seen == expected


@pytest.mark.parametrize("query", ["limit=0", "limit=1001", "limit=x", "order=random", "after=nocolon&order=newest"])
@pytest_twisted.ensureDeferred
async def test_bad_listing_queries(open_api: Api, query: str) -> None:
    """Out-of-range limits, unknown orders and malformed cursors are 400."""
    client = await _user(open_api, "alice", 0)
    reply = await client.call("GET", "/api/store?" + query)
    assert reply.status == 400
    assert reply.json()["error"] == "invalid_request"


@pytest_twisted.ensureDeferred
async def test_large_object_round_trip(open_api: Api) -> None:
    """A multi-chunk object (3 MiB) is stored and streamed back intact."""
    client = await _user(open_api, "alice", 0)
    data = bytes(range(256)) * (3 * 4096)
    assert (await client.call("PUT", "/api/store/Cache/big", data=data)).status == 201
    got = await client.call("GET", "/api/store/Cache/big")
    assert got.body == data
