"""``GET /api/store?since=`` (what changed) and ``POST /api/batch`` (many objects in one streamed answer), on both
backends, with hostile input."""

from __future__ import annotations

import json
from typing import Any

import pytest
import pytest_twisted

from tests.support.webapi import Api, ApiClient, signed_in


def parse_batch(body: bytes) -> list[tuple[dict[str, Any], bytes]]:
    """The frames of a batch answer: (header, bytes) in order; the whole body must be consumed exactly."""
    out = []
    at = 0
    while at < len(body):
        end = body.index(b"\n", at)
        header = json.loads(body[at:end])
        at = end + 1
        size = header.get("size", 0) if "error" not in header else 0
        out.append((header, body[at : at + size]))
        at += size
    assert at == len(body)
    return out


async def put(client: ApiClient, path: str, data: bytes) -> int:
    reply = await client.call("PUT", f"/api/store/{path}", data=data)
    assert reply.status in (200, 201), reply.body
    return int(reply.json()["version"])


async def changes(client: ApiClient, query: str) -> Any:
    reply = await client.call("GET", f"/api/store?{query}")
    assert reply.status == 200, reply.body
    return reply.json()


@pytest_twisted.ensureDeferred
async def test_changes_then_batch(api: Api) -> None:
    """A full listing, the objects in one batch, then only what changed: new, replaced and deleted."""
    alice = await signed_in(api, "alice", "alice password")
    for i in range(5):
        await put(alice, f"Notes/{i}", bytes([i]) * (i * 1000))
    first = await changes(alice, "since=0&prefix=Notes/")
    assert first["reset"] is True and first["deleted"] == [] and first["next"] is None
    listed = [o["path"] for o in first["objects"]]
    assert listed == [f"Notes/{i}" for i in range(5)]
    assert [o["seq"] for o in first["objects"]] == sorted(o["seq"] for o in first["objects"])

    reply = await alice.call("POST", "/api/batch", json_body={"paths": list(reversed(listed)) + ["Notes/none"]})
    assert reply.status == 200 and reply.header("Content-Type") == "application/vnd.mailiverse.batch"
    frames = parse_batch(reply.body)
    assert [h["path"] for h, _ in frames] == list(reversed(listed)) + ["Notes/none"]
    for header, data in frames[:-1]:
        i = int(header["path"].rsplit("/", 1)[1])
        assert data == bytes([i]) * (i * 1000) and header["version"] == 1 and header["size"] == i * 1000
    assert frames[-1][0] == {"path": "Notes/none", "error": "not_found"}

    since = first["seq"]
    await put(alice, "Notes/9", b"new")
    assert (await alice.call("DELETE", "/api/store/Notes/1")).status == 200
    reply = await alice.call("PUT", "/api/store/Notes/2", data=b"changed", headers={"If-Match": '"1"'})
    assert reply.status == 200
    later = await changes(alice, f"since={since}&prefix=Notes/")
    assert later["reset"] is False
    assert [(o["path"], o["version"]) for o in later["objects"]] == [("Notes/9", 1), ("Notes/2", 2)]
    assert [d["path"] for d in later["deleted"]] == ["Notes/1"]
    assert (await changes(alice, f"since={later['seq']}"))["objects"] == []


@pytest_twisted.ensureDeferred
async def test_changes_page_in_order(api: Api) -> None:
    """Pages of a round keep ``since`` and continue ``after`` the last one's ``next``."""
    alice = await signed_in(api, "alice", "alice password")
    for i in range(7):
        await put(alice, f"Notes/{i}", b"x")
    seen: list[str] = []
    query = "since=0&prefix=Notes/&limit=3"
    while True:
        page = await changes(alice, query)
        assert page["reset"] is True
        seen += [o["path"] for o in page["objects"]]
        if page["next"] is None:
            break
        query = f"since=0&prefix=Notes/&limit=3&after={page['next']}"
    assert seen == [f"Notes/{i}" for i in range(7)]


@pytest_twisted.ensureDeferred
async def test_a_batch_shows_only_your_own_store(api: Api) -> None:
    """Another account's path is not found for you; without a session, 401."""
    alice = await signed_in(api, "alice", "alice password")
    bob = await signed_in(api, "bob", "bob password", 1)
    await put(alice, "Notes/secret", b"alice only")
    frames = parse_batch((await bob.call("POST", "/api/batch", json_body={"paths": ["Notes/secret"]})).body)
    assert frames == [({"path": "Notes/secret", "error": "not_found"}, b"")]
    assert await bob.call("GET", "/api/store?since=0")
    assert [o["path"] for o in (await changes(bob, "since=0"))["objects"] if o["path"].startswith("Notes/")] == []
    assert (await api.client().call("POST", "/api/batch", json_body={"paths": ["Notes/secret"]})).status == 401


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("since=-1", 400),
        ("since=abc", 400),
        ("since=1e3", 400),
        ("since=99999999999999999999", 400),
        ("since=0&since=1", 400),
        ("since=0&limit=0", 400),
        ("since=0&limit=5001", 400),
        ("since=0&after=x", 400),
        ("since=0&order=newest", 400),
        ("since=0&after=1&after=2", 400),
    ],
)
@pytest_twisted.ensureDeferred
async def test_bad_change_queries(api: Api, query: str, code: int) -> None:
    """Every malformed change query is a clear 400."""
    alice = await signed_in(api, "alice", "alice password")
    reply = await alice.call("GET", f"/api/store?{query}")
    assert reply.status == code
    assert reply.json()["error"] in ("invalid_request", "invalid_path")


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"paths": []},
        {"paths": "Notes/a"},
        {"paths": ["Notes/a", "Notes/a"]},
        {"paths": [f"Notes/{i}" for i in range(501)]},
        {"paths": ["../etc/passwd"]},
        {"paths": [7]},
        {"paths": ["/abs"]},
    ],
)
@pytest_twisted.ensureDeferred
async def test_bad_batches(api: Api, body: Any) -> None:
    """Malformed, duplicate, hostile and too many paths are a clear 400 before anything is read."""
    alice = await signed_in(api, "alice", "alice password")
    reply = await alice.call("POST", "/api/batch", json_body=body)
    assert reply.status == 400, reply.body
    assert reply.json()["error"] in ("invalid_request", "invalid_path")


@pytest_twisted.ensureDeferred
async def test_batch_bodies_that_are_not_json_or_too_big(api: Api) -> None:
    """Not JSON: 415 or 400; a body over the batch's JSON limit: 413."""
    alice = await signed_in(api, "alice", "alice password")
    wrong_type = await alice.call("POST", "/api/batch", data=b'{"paths":["a"]}', headers={"Content-Type": "text/plain"})
    assert wrong_type.status == 415
    broken = await alice.call("POST", "/api/batch", data=b'{"paths":[', headers={"Content-Type": "application/json"})
    assert broken.status == 400
    huge = await alice.call(
        "POST",
        "/api/batch",
        data=b'{"paths":["' + b"a" * 600_000 + b'"]}',
        headers={"Content-Type": "application/json"},
    )
    assert huge.status == 413


@pytest_twisted.ensureDeferred
async def test_batch_limits_say_what_to_fetch_alone_or_again(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """An object over the inline cap says too_large; past the answer's byte budget the rest say limit."""
    from mailiverse.web.routes import store as routes

    monkeypatch.setattr(routes, "MAX_BATCH_OBJECT", 3000)
    monkeypatch.setattr(routes, "MAX_BATCH_BYTES", 5000)
    alice = await signed_in(api, "alice", "alice password")
    for name, size in (("a", 2000), ("big", 4000), ("b", 2000), ("c", 2000), ("d", 10)):
        await put(alice, f"Notes/{name}", b"z" * size)
    frames = parse_batch(
        (
            await alice.call("POST", "/api/batch", json_body={"paths": [f"Notes/{n}" for n in "a big b c d".split()]})
        ).body
    )
    assert [(h["path"], h.get("error")) for h, _ in frames] == [
        ("Notes/a", None),
        ("Notes/big", "too_large"),
        ("Notes/b", None),
        ("Notes/c", "limit"),
        ("Notes/d", None),
    ]
