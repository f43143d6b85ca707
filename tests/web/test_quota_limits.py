"""Storage quotas and send limits through the API: 507 over_quota on PUT and send, 429 rate_limited on send.

Every refusal leaves nothing behind: no object, no delivery, no queued message, no Sent copy.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_twisted

from mailiverse.store import quota
from mailiverse.store.db import Database
from mailiverse.store.objects import list_objects_txn
from mailiverse.store.users import get_user_txn
from tests.support.webapi import Api, ApiClient, make_api, signed_in

PASSWORD = "quota password"
#: The hourly send limit (recipients per account) of the app these tests build.
SEND_LIMIT = 3


@pytest.fixture
def limited_api(database: Database, tmp_path: Path) -> Iterator[Api]:
    """The app with an hourly send limit of SEND_LIMIT recipients per account."""
    built, delivery = make_api(database, tmp_path, send_limit_per_hour=SEND_LIMIT)
    try:
        yield built
    finally:
        delivery.stop()


async def _user(api: Api, name: str, index: int) -> ApiClient:
    return await signed_in(api, name, PASSWORD, index)


async def _user_id(api: Api, name: str) -> int:
    user = await api.database.run(get_user_txn, name)
    assert user is not None
    return user.id


async def _set_quota(api: Api, name: str, size: int | None) -> None:
    await api.database.transact(quota.set_quota_txn, await _user_id(api, name), size)


async def _paths(api: Api, name: str, prefix: str = "Mail/") -> list[str]:
    return [o.path for o in await api.database.run(list_objects_txn, await _user_id(api, name), prefix)]


async def _used(api: Api, name: str) -> int:
    return (await api.database.run(quota.get_usage_txn, await _user_id(api, name))).used_bytes


@pytest_twisted.ensureDeferred
async def test_a_put_past_the_quota_is_507_and_deletes_still_work(open_api: Api) -> None:
    """PUT past the account's quota answers 507 over_quota and stores nothing; DELETE frees room; then PUT works."""
    alice = await _user(open_api, "alice", 0)
    await _set_quota(open_api, "alice", 10)
    assert (await alice.call("PUT", "/api/store/Cache/a", data=b"12345678")).status == 201
    refused = await alice.call("PUT", "/api/store/Cache/b", data=b"12345")
    assert refused.status == 507
    assert refused.json() == {"error": "over_quota", "message": refused.json()["message"]}
    assert "quota" in refused.json()["message"]
    grown = await alice.call("PUT", "/api/store/Cache/a", data=b"12345678901", headers={"If-Match": '"1"'})
    assert (grown.status, grown.json()["error"]) == (507, "over_quota")
    assert (await alice.call("GET", "/api/store/Cache/b")).status == 404
    assert (await alice.call("GET", "/api/store/Cache/a")).body == b"12345678"
    assert (await alice.call("DELETE", "/api/store/Cache/a")).status == 200
    assert (await alice.call("PUT", "/api/store/Cache/b", data=b"12345")).status == 201
    assert await _used(open_api, "alice") == 5


@pytest_twisted.ensureDeferred
async def test_the_appliance_default_quota_applies_to_puts(database: Database, tmp_path: Path) -> None:
    """An account without its own quota is held to the appliance's --default-quota."""
    api, delivery = make_api(database, tmp_path, open_signup=True, default_quota=16)
    try:
        alice = await _user(api, "alice", 0)
        assert (await alice.call("PUT", "/api/store/Cache/a", data=b"x" * 16)).status == 201
        assert (await alice.call("PUT", "/api/store/Cache/b", data=b"y")).status == 507
        await _set_quota(api, "alice", 17)
        assert (await alice.call("PUT", "/api/store/Cache/b", data=b"y")).status == 201
    finally:
        delivery.stop()


@pytest_twisted.ensureDeferred
async def test_send_to_a_full_local_mailbox_is_refused_whole(api: Api) -> None:
    """A local recipient already full, or whom the message would fill past the quota: 507
    recipient_over_quota, and nothing is delivered, queued or filed as Sent."""
    alice = await _user(api, "alice", 0)
    await _user(api, "bob", 1)
    message = {"to": ["bob@example.org", "carol@remote.test"], "subject": "s", "text": "hello bob\n"}
    for bob_quota in (0, 10):
        await _set_quota(api, "bob", bob_quota)
        reply = await alice.call("POST", "/api/send", json_body=message)
        assert (reply.status, reply.json()["error"]) == (507, "recipient_over_quota"), reply.body
        assert await _paths(api, "bob") == []
        assert await _paths(api, "alice") == []
        assert api.outbound.submitted == []
    await _set_quota(api, "bob", None)
    assert (await alice.call("POST", "/api/send", json_body=message)).status == 200
    assert len(await _paths(api, "bob", "Mail/In/")) == 1


@pytest_twisted.ensureDeferred
async def test_the_sent_copy_counts_against_the_sender(api: Api) -> None:
    """The Sent copy is filed (even past the quota) and counted; a sender whose mailbox is full is refused 507."""
    alice = await _user(api, "alice", 0)
    message = {"to": ["carol@remote.test"], "subject": "s", "text": "hello carol\n"}
    await _set_quota(api, "alice", 1)
    assert (await alice.call("POST", "/api/send", json_body=message)).status == 200
    assert len(await _paths(api, "alice", "Mail/Sent/")) == 1
    assert await _used(api, "alice") > 1
    refused = await alice.call("POST", "/api/send", json_body=message)
    assert (refused.status, refused.json()["error"]) == (507, "over_quota")
    assert len(api.outbound.submitted) == 1
    assert len(await _paths(api, "alice", "Mail/Sent/")) == 1


@pytest_twisted.ensureDeferred
async def test_the_hourly_send_limit_answers_429_and_sends_nothing(limited_api: Api) -> None:
    """Past SEND_LIMIT recipients an hour, /api/send answers 429 rate_limited with Retry-After, and that
    attempt delivers, queues and files nothing; once Retry-After has passed, sending works again."""
    api = limited_api
    alice = await _user(api, "alice", 0)
    await _user(api, "bob", 1)
    to_bob = {"to": ["bob@example.org"], "text": "local\n"}
    to_two = {"to": ["bob@example.org", "carol@remote.test"], "text": "two\n"}
    assert (await alice.call("POST", "/api/send", json_body=to_two)).status == 200
    assert (await alice.call("POST", "/api/send", json_body=to_bob)).status == 200
    refused = await alice.call("POST", "/api/send", json_body=to_bob)
    assert refused.status == 429
    assert refused.json() == {"error": "rate_limited", "message": refused.json()["message"]}
    retry_after = int(refused.header("Retry-After") or "0")
    assert 0 < retry_after <= 3600
    assert len(await _paths(api, "bob", "Mail/In/")) == 2
    assert len(await _paths(api, "alice", "Mail/Sent/")) == 2
    assert len(api.outbound.submitted) == 1
    # Another account has its own budget.
    bob = await _user(api, "bob2", 2)
    assert (await bob.call("POST", "/api/send", json_body=to_bob)).status == 200
    api.time.advance(retry_after)
    assert (await alice.call("POST", "/api/send", json_body=to_bob)).status == 200
    assert (await alice.call("POST", "/api/send", json_body=to_bob)).status == 429


@pytest_twisted.ensureDeferred
async def test_openapi_lists_the_new_refusals(api: Api) -> None:
    """The OpenAPI document lists 507 for PUT /api/store/{path}, and 429 and 507 for POST /api/send."""
    document = (await api.client().call("GET", "/api/openapi.json", auth=None)).json()
    assert "507" in document["paths"]["/api/store/{path}"]["put"]["responses"]
    assert {"429", "507"} <= set(document["paths"]["/api/send"]["post"]["responses"])
