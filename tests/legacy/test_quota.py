"""The legacy MV store keeps the account's storage quota: a StorePut past it answers 507, a StoreDelete frees room."""

from __future__ import annotations

import json

import pytest_twisted

from mailiverse.store.quota import set_quota_txn
from mailiverse.store.users import get_user_txn
from tests.support.legacy import Client, LegacyAppliance


@pytest_twisted.ensureDeferred
async def test_store_put_past_the_quota_is_507_and_delete_frees_room(appliance: LegacyAppliance) -> None:
    """With a 10-byte quota, a StorePut that would pass it answers 507 over_quota and stores nothing."""
    client = Client(appliance, "plain")
    await client.sign_up()
    user = await appliance.database.run(get_user_txn, "alice")
    assert user is not None
    stored_already = user.used_bytes
    await appliance.database.transact(set_quota_txn, user.id, stored_already + 10)
    assert (await client.store("PUT", "Cache/a", b"12345678")).code == 200
    refused = await client.store("PUT", "Cache/b", b"12345")
    assert refused.code == 507
    assert json.loads(await refused.content())["error"] == "over_quota"
    assert (await client.store("GET", "Cache/b")).code == 404
    assert (await client.store("DELETE", "Cache/a")).code == 200
    assert (await client.store("PUT", "Cache/b", b"12345")).code == 200
