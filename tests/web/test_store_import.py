"""Store import (``PUT /api/store/<path>?import=1``): absent Mail/In, In_Json, Out, Out_Json objects only,
bytes kept."""

from __future__ import annotations

import os

import pytest_twisted

from tests.support.webapi import Api, ApiClient, signed_in

PASSWORD = "import password"


async def _user(api: Api, name: str, index: int) -> ApiClient:
    return await signed_in(api, name, PASSWORD, index)


@pytest_twisted.ensureDeferred
async def test_import_creates_absent_mail_objects_byte_for_byte(open_api: Api) -> None:
    """import=1 with If-None-Match: * creates each importable Mail/ folder's object, and GET returns the same bytes."""
    client = await _user(open_api, "alice", 0)
    for folder in ("In", "In_Json", "Out", "Out_Json"):
        data = os.urandom(300) + b"\r\n\x00"
        path = f"/api/store/Mail/{folder}/1390000000000_42"
        made = await client.call("PUT", path + "?import=1", data=data, headers={"If-None-Match": "*"})
        assert made.status == 201, made.body
        assert (await client.call("GET", path)).body == data


@pytest_twisted.ensureDeferred
async def test_import_never_replaces_mail(open_api: Api) -> None:
    """An import onto an existing Mail/ object is a version conflict and leaves the stored bytes alone."""
    client = await _user(open_api, "alice", 0)
    path = "/api/store/Mail/In/1_2"
    assert (await client.call("PUT", path + "?import=1", data=b"first", headers={"If-None-Match": "*"})).status == 201
    again = await client.call("PUT", path + "?import=1", data=b"second", headers={"If-None-Match": "*"})
    assert (again.status, again.json()["error"]) == (412, "version_conflict")
    assert (await client.call("GET", path)).body == b"first"
    for headers in ({}, {"If-Match": '"1"'}, {"If-Match": '"1"', "If-None-Match": "*"}):
        refused = await client.call("PUT", path + "?import=1", data=b"third", headers=headers)
        assert (refused.status, refused.json()["error"]) == (400, "invalid_precondition")
    assert (await client.call("GET", path)).body == b"first"


@pytest_twisted.ensureDeferred
async def test_import_is_limited_to_the_mail_folders_of_a_dump(open_api: Api) -> None:
    """Other Mail/ folders (Spam, Screener, Trash, Mail itself) stay server-written, and import takes only the value
    1; a client's own Sent copies and drafts (a mail app through the bridge, docs/bridge.md) may be imported."""
    client = await _user(open_api, "alice", 0)
    for path in ("Mail/Sent/1_2", "Mail/Drafts_Json/1_2"):
        made = await client.call("PUT", f"/api/store/{path}?import=1", data=b"x", headers={"If-None-Match": "*"})
        assert made.status == 201, path
    for path in (
        "Mail/Spam/1_2",
        "Mail/Screener_Json/1_2",
        "Mail/Trash/1_2",
        "Mail/In",
        "Mail/Inbox/1_2",
        "Mail/Input/1",
    ):
        refused = await client.call("PUT", f"/api/store/{path}?import=1", data=b"x", headers={"If-None-Match": "*"})
        assert (refused.status, refused.json()["error"]) == (403, "read_only_path"), path
    plain = await client.call("PUT", "/api/store/Mail/In/1_2", data=b"x", headers={"If-None-Match": "*"})
    assert (plain.status, plain.json()["error"]) == (403, "read_only_path")
    for query in ("import=0", "import=yes", "import=1&import=1"):
        bad = await client.call("PUT", f"/api/store/Mail/In/1_2?{query}", data=b"x", headers={"If-None-Match": "*"})
        assert (bad.status, bad.json()["error"]) == (400, "invalid_request"), query


@pytest_twisted.ensureDeferred
async def test_import_flag_outside_mail_is_an_ordinary_put(open_api: Api) -> None:
    """Outside Mail/ the flag changes nothing: conditions work as on any PUT."""
    client = await _user(open_api, "alice", 0)
    made = await client.call("PUT", "/api/store/Cache/I?import=1", data=b"index", headers={"If-None-Match": "*"})
    assert made.status == 201
    replaced = await client.call("PUT", "/api/store/Cache/I?import=1", data=b"index2", headers={"If-Match": '"1"'})
    assert replaced.status == 200
    assert (await client.call("GET", "/api/store/Cache/I")).body == b"index2"


@pytest_twisted.ensureDeferred
async def test_import_needs_a_session(open_api: Api) -> None:
    """Without a session the import is refused before anything is stored."""
    await _user(open_api, "alice", 0)
    anonymous = open_api.client()
    refused = await anonymous.call("PUT", "/api/store/Mail/In/1_2?import=1", data=b"x", headers={"If-None-Match": "*"})
    assert refused.status == 401
