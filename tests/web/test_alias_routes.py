"""``/api/aliases``: shield and chosen aliases created, listed (addresses sealed to the owner), limited to
known senders, disabled, enabled and deleted for good; RCPT resolution through the directory, look-alike
spellings, limits, and a database that holds none of the addresses."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_twisted

from mailiverse.crypto.formats import open_mail_object
from mailiverse.delivery.pipeline import Delivery
from mailiverse.store.aliases import SHIELD_ALPHABET, SHIELD_LENGTH, AddressHasher
from mailiverse.store.db import Database
from mailiverse.web.routes.aliases import AliasSettings
from tests.support.webapi import Api, ApiClient, make_api, rsa_key, signed_in

PASSWORD = "correct horse battery staple"


@pytest.fixture
def served(database: Database, tmp_path: Path) -> Iterator[tuple[Api, Delivery]]:
    settings = AliasSettings(AddressHasher(b"\x01" * 32), max_aliases=5, rate=4)
    built, delivery = make_api(database, tmp_path, alias_settings=settings)
    try:
        yield built, delivery
    finally:
        delivery.stop()


async def _alice(api: Api) -> ApiClient:
    return await signed_in(api, "alice", PASSWORD, 0)


def _opened(sealed_b64: str, index: int = 0) -> str:
    import base64

    return str(json.loads(open_mail_object(rsa_key(index), base64.b64decode(sealed_b64)))["address"])


@pytest_twisted.ensureDeferred
async def test_a_shield_alias_is_made_listed_sealed_and_receives(served: tuple[Api, Delivery]) -> None:
    api, delivery = served
    alice = await _alice(api)
    reply = await alice.call("POST", "/api/aliases", json_body={"kind": "shield"})
    assert reply.status == 201, reply.body
    created = reply.json()
    local, _, domain = created["address"].partition("@")
    assert len(local) == SHIELD_LENGTH and set(local) <= set(SHIELD_ALPHABET) and domain == "example.org"
    assert (created["kind"], created["state"], created["senders"]) == ("shield", "active", "any")
    listed = (await alice.call("GET", "/api/aliases")).json()["aliases"]
    assert [a["id"] for a in listed] == [created["id"]] and "address" not in listed[0]
    assert _opened(listed[0]["sealed_address"]) == created["address"]
    found = await delivery.resolve(created["address"], "ann@remote.test")
    assert found is not None and found.user == "alice" and found.address == created["address"]
    # Look-alikes are one character: upper case, 0/o, 1/i/l, v/w.
    twisted = local.upper().replace("0", "O").replace("1", "l").replace("V", "W")
    assert (await delivery.resolve(f"{twisted}@mail.example.net", "ann@remote.test")) is not None


@pytest_twisted.ensureDeferred
async def test_disable_enable_delete_and_never_again(served: tuple[Api, Delivery]) -> None:
    api, delivery = served
    alice = await _alice(api)
    created = (
        await alice.call("POST", "/api/aliases", json_body={"kind": "chosen", "address": "shop@example.org"})
    ).json()
    path = f"/api/aliases/{created['id']}"
    assert (await alice.call("PATCH", path, json_body={"state": "disabled"})).json()["state"] == "disabled"
    assert await delivery.resolve("shop@example.org", "ann@remote.test") is None
    assert (await alice.call("PATCH", path, json_body={"state": "active"})).json()["state"] == "active"
    assert await delivery.resolve("shop@example.org", "ann@remote.test") is not None
    assert (await alice.call("DELETE", path)).json() == {"status": "deleted", "id": created["id"]}
    assert await delivery.resolve("shop@example.org", "ann@remote.test") is None
    assert (await alice.call("GET", "/api/aliases")).json()["aliases"] == []
    again = await alice.call("POST", "/api/aliases", json_body={"kind": "chosen", "address": "sh0p@example.org"})
    assert (again.status, again.json()["error"]) == (409, "alias_taken")
    assert (await alice.call("PATCH", path, json_body={"state": "active"})).status == 404


@pytest_twisted.ensureDeferred
async def test_a_sender_limited_alias_refuses_new_senders(served: tuple[Api, Delivery]) -> None:
    api, delivery = served
    alice = await _alice(api)
    created = (await alice.call("POST", "/api/aliases", json_body={"kind": "shield"})).json()
    address = created["address"]
    recipient = await delivery.resolve(address, "news@list.test")
    assert recipient is not None
    await delivery._record_alias_use([recipient], "news@list.test")  # what a delivery records
    path = f"/api/aliases/{created['id']}"
    assert (await alice.call("PATCH", path, json_body={"senders": "known"})).status == 200
    assert await delivery.resolve(address, "news@list.test") is not None
    assert await delivery.resolve(address, "other@list.test") is None
    assert await delivery.resolve(address, "") is None  # a bounce is no known sender
    assert await delivery.resolve(address) is not None  # the owner's own paths (sending from it)
    assert (await alice.call("PATCH", path, json_body={"senders": "known-domains"})).status == 200
    assert await delivery.resolve(address, "other@list.test") is not None
    assert await delivery.resolve(address, "spam@seller.test") is None
    counted = (await alice.call("GET", "/api/aliases")).json()["aliases"][0]
    assert counted["received"] == 1 and counted["last_used_ms"] is not None


@pytest_twisted.ensureDeferred
async def test_limits_rate_and_count(served: tuple[Api, Delivery]) -> None:
    api, _delivery = served
    alice = await _alice(api)
    for _ in range(4):
        assert (await alice.call("POST", "/api/aliases", json_body={})).status == 201
    refused = await alice.call("POST", "/api/aliases", json_body={"kind": "shield"})
    assert (refused.status, refused.json()["error"], refused.header("Retry-After")) == (
        429,
        "alias_rate_limited",
        "900",
    )


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"kind": "chosen", "address": "alice@example.org"}, 409, "alias_taken"),  # an account's name
        ({"kind": "chosen", "address": "a1ice@example.org"}, 409, "alias_taken"),  # one that looks like it
        ({"kind": "chosen", "address": "AL1CE@example.org"}, 409, "alias_taken"),
        ({"kind": "chosen", "address": "postmaster@example.org"}, 409, "alias_taken"),
        ({"kind": "chosen", "address": "shop@elsewhere.test"}, 400, "invalid_request"),
        ({"kind": "chosen", "address": "a b@example.org"}, 400, "invalid_request"),
        ({"kind": "chosen", "address": "x" * 65 + "@example.org"}, 400, "invalid_request"),
        ({"kind": "chosen"}, 400, "invalid_request"),
        ({"kind": "shield", "address": "mine@example.org"}, 400, "invalid_request"),
        ({"kind": "shield", "domain": "elsewhere.test"}, 400, "invalid_request"),
        ({"kind": "other"}, 400, "invalid_request"),
        ({"kind": "shield", "senders": "everyone"}, 400, "invalid_request"),
        ({"kind": "shield", "label": "not base64!"}, 400, "invalid_request"),
        ({"kind": "shield", "label": "QQ==" * 2000}, 400, "invalid_request"),
        ({"kind": "shield", "extra": 1}, 400, "invalid_request"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_what_is_refused(served: tuple[Api, Delivery], body: dict[str, object], status: int, error: str) -> None:
    api, _delivery = served
    alice = await _alice(api)
    reply = await alice.call("POST", "/api/aliases", json_body=body)
    assert (reply.status, reply.json()["error"]) == (status, error)
    assert (await alice.call("GET", "/api/aliases")).json()["aliases"] == []


@pytest_twisted.ensureDeferred
async def test_one_account_cannot_see_or_touch_anothers_alias(served: tuple[Api, Delivery]) -> None:
    api, _delivery = served
    alice = await _alice(api)
    bob = await signed_in(api, "bob", PASSWORD, 1)
    created = (await alice.call("POST", "/api/aliases", json_body={"kind": "shield"})).json()
    assert (await bob.call("GET", "/api/aliases")).json()["aliases"] == []
    assert (await bob.call("PATCH", f"/api/aliases/{created['id']}", json_body={"state": "disabled"})).status == 404
    assert (await bob.call("DELETE", f"/api/aliases/{created['id']}")).status == 404
    lookup = await bob.call("POST", "/api/aliases/lookup", json_body={"address": created["address"]})
    assert lookup.status == 404
    mine = await alice.call("POST", "/api/aliases/lookup", json_body={"address": created["address"].upper()})
    assert mine.json()["id"] == created["id"]
    # Nobody may take an alias's name as an account.
    signup = await api.client().call(
        "POST", "/api/signup", json_body=api.client().signup_body(created["address"].split("@")[0], PASSWORD, 2)
    )
    assert signup.status in (403, 409)


@pytest_twisted.ensureDeferred
async def test_the_database_holds_no_alias_address(served: tuple[Api, Delivery]) -> None:
    api, _delivery = served
    alice = await _alice(api)
    address = (await alice.call("POST", "/api/aliases", json_body={"kind": "shield"})).json()["address"]
    chosen = await alice.call("POST", "/api/aliases", json_body={"kind": "chosen", "address": "canary-x7@example.org"})
    assert chosen.status == 201
    from sqlalchemy import text

    def dump(conn: object) -> bytes:
        rows = conn.execute(text("SELECT * FROM aliases")).fetchall()  # type: ignore[attr-defined]
        return repr(rows).encode()

    dumped = await api.database.run(dump)
    for secret in (address.split("@")[0], "canary-x7"):
        assert secret.encode() not in dumped


@pytest_twisted.ensureDeferred
async def test_a_deleted_accounts_aliases_become_tombstones(served: tuple[Api, Delivery]) -> None:
    """Deleting the account leaves only the aliases' hashes: refused at RCPT, and never issued to anyone again."""
    from mailiverse.store.aliases import find_alias_txn
    from mailiverse.store.users import delete_user_txn, get_user_txn

    api, delivery = served
    alice = await _alice(api)
    created = await alice.call("POST", "/api/aliases", json_body={"kind": "chosen", "address": "kept@example.org"})
    assert created.status == 201
    user = await api.database.run(get_user_txn, "alice")
    assert user is not None
    assert await api.database.transact(delete_user_txn, user.id)
    assert await delivery.resolve("kept@example.org", "ann@remote.test") is None
    hasher = AddressHasher(b"\x01" * 32)
    tomb = await api.database.run(find_alias_txn, hasher.alias("kept"))
    assert tomb is not None and (tomb.state, tomb.user_id, tomb.sealed_address) == ("deleted", None, None)
    bob = await signed_in(api, "bob", PASSWORD, 1)
    again = await bob.call("POST", "/api/aliases", json_body={"kind": "chosen", "address": "kept@example.org"})
    assert (again.status, again.json()["error"]) == (409, "alias_taken")
