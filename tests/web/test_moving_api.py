"""Moving house over the API (docs/moving.md): the switch on a signed moved record (published in the log and in
the key answer, and RCPT's recipient carrying the new address), the keys an account brings along, objects
brought from another appliance, the digests, and the deletion the user asks for; and the refusal of malformed
requests, foreign signatures and bad grace periods, with nothing changed by a refusal."""

from __future__ import annotations

import base64
import hashlib
import time
from typing import Any

import pytest
import pytest_twisted
from cryptography.hazmat.primitives.asymmetric import rsa

from mailiverse.crypto.keys import public_key_der
from mailiverse.keylog.records import (
    DAY_MS,
    canonical_json,
    key_block_change_statement,
    key_record_fields,
    moved_record_fields,
    sign_brought_key,
    sign_key_record,
    sign_moved_record,
    sign_rsa,
    verify_moved_record,
)
from mailiverse.store.keylog import sealable_key_ids_txn
from mailiverse.store.users import get_user_txn
from tests.support import rfc9162
from tests.support.webapi import Api, ApiClient, rsa_key, signed_in

PASSWORD = "a long enough password for moving house"
NEW = "alice@new.example"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _addresses(api: Api, name: str) -> list[str]:
    return [f"{name}@{domain}" for domain in api.app.domains]


async def _published(api: Api, name: str, index: int) -> tuple[ApiClient, str]:
    """A logged-in account whose key record is in the directory, and that key's id."""
    client = await signed_in(api, name, PASSWORD, index)
    record = sign_key_record(
        key_record_fields(rsa_key(index).public_key(), _addresses(api, name), created_ms=1000), rsa_key(index)
    )
    reply = await client.call("POST", "/api/keys", json_body={"records": [record]})
    assert reply.status == 201, reply.body
    return client, record["key_id"]


def _moved(
    api: Api,
    name: str,
    key_id: str,
    key: rsa.RSAPrivateKey,
    *,
    to: str = NEW,
    grace_days: int = 30,
    created_ms: int | None = None,
    addresses: list[str] | None = None,
) -> dict[str, Any]:
    created = int(time.time() * 1000) if created_ms is None else created_ms
    fields = moved_record_fields(
        key_id,
        _addresses(api, name) if addresses is None else addresses,
        to,
        created_ms=created,
        forward_until_ms=created + grace_days * DAY_MS,
    )
    return sign_moved_record(fields, key)


async def _state(client: ApiClient) -> dict[str, Any]:
    reply = await client.call("GET", "/api/account/move")
    assert reply.status == 200
    answer: dict[str, Any] = reply.json()
    return answer


@pytest_twisted.ensureDeferred
async def test_move_switches_publishes_the_record_and_marks_the_recipient(api: Api) -> None:
    """A move on a record signed by the current key switches the account: the record is a proven log leaf in the
    key answer, RCPT's recipient carries the new address (not for an alias), and a second move is refused."""
    alice, key_id = await _published(api, "alice", 0)
    assert (await _state(alice))["moved"] is False
    record = _moved(api, "alice", key_id, rsa_key(0))
    reply = await alice.call("POST", "/api/account/move", json_body={"to": NEW, "grace_days": 30, "record": record})
    assert reply.status == 201, reply.body
    answer = reply.json()
    assert answer["moved_to"] == NEW and answer["forward_until_ms"] == record["forward_until_ms"]

    state = await _state(alice)
    assert state["moved"] is True and state["moved_to"] == NEW and state["pending"] == 0

    key_answer = (await api.client().call("GET", "/.well-known/mailiverse/keys/alice@example.org", auth=None)).json()
    moved = key_answer["moved"]
    assert moved["to"] == NEW and moved["record"] == record
    leaf = base64.b64decode(moved["leaf"])
    assert leaf == canonical_json(record)
    assert verify_moved_record(moved["record"], public_key_der(rsa_key(0))).serves("alice@mail.example.net")
    path = [base64.b64decode(node) for node in moved["audit_path"]]
    root = base64.b64decode(key_answer["sth"]["root_hash"])
    assert rfc9162.verify_inclusion(rfc9162.leaf(leaf), moved["leaf_index"], moved["tree_size"], path, root)
    assert key_answer["record"]["key_id"] == key_id and key_answer["history"] == []  # every member kept

    for address in ("alice@example.org", "ALICE@mail.example.net"):
        recipient = await api.submission._inbox.resolve(address, "bob@remote.test")
        assert recipient is not None and recipient.moved_to == NEW

    again = await alice.call("POST", "/api/account/move", json_body={"to": NEW, "grace_days": 30, "record": record})
    assert (again.status, again.json()["error"]) == (409, "already_moved")
    late = await alice.call("POST", "/api/account/move/copied", json_body={"key_bases": ["1_2"]})
    assert (late.status, late.json()["error"]) == (409, "already_moved")


def _bad_moves(api: Api, key_id: str) -> list[tuple[Any, int, str]]:
    record = _moved(api, "alice", key_id, rsa_key(0))
    return [
        ({"grace_days": 30, "record": record}, 400, "invalid_request"),
        ({"to": NEW, "grace_days": 30}, 400, "invalid_request"),
        ({"to": NEW, "grace_days": 30, "record": record, "extra": 1}, 400, "invalid_request"),
        ({"to": "Alice@New.Example", "grace_days": 30, "record": record}, 400, "invalid_request"),
        ({"to": "alice@new.example\r\nX: y", "grace_days": 30, "record": record}, 400, "invalid_request"),
        ({"to": "alice@mail.example.net", "grace_days": 30, "record": record}, 400, "invalid_request"),
        ({"to": NEW, "grace_days": -1, "record": record}, 400, "invalid_request"),
        ({"to": NEW, "grace_days": 366, "record": record}, 400, "invalid_request"),
        ({"to": NEW, "grace_days": "30", "record": record}, 400, "invalid_request"),
        ({"to": NEW, "grace_days": True, "record": record}, 400, "invalid_request"),
        ({"to": NEW, "grace_days": 1.5, "record": record}, 400, "invalid_request"),
        ({"to": NEW, "grace_days": 29, "record": record}, 400, "invalid_record"),
        ({"to": NEW, "grace_days": 30, "record": dict(record, to="x@new.example")}, 400, "invalid_record"),
        ({"to": NEW, "grace_days": 30, "record": _moved(api, "alice", key_id, rsa_key(5))}, 400, "invalid_record"),
        ({"to": NEW, "grace_days": 30, "record": "junk"}, 400, "invalid_record"),
        (
            {"to": "bob@new.example", "grace_days": 30, "record": record},
            400,
            "invalid_record",
        ),
        (
            {
                "to": NEW,
                "grace_days": 30,
                "record": _moved(api, "alice", key_id, rsa_key(0), addresses=["alice@example.org"]),
            },
            400,
            "invalid_record",
        ),
        (
            {
                "to": NEW,
                "grace_days": 30,
                "record": _moved(api, "alice", key_id, rsa_key(0), created_ms=int(time.time() * 1000) - 2 * DAY_MS),
            },
            400,
            "invalid_record",
        ),
        (
            {
                "to": NEW,
                "grace_days": 30,
                "record": _moved(api, "alice", "5f0c0d5e-8f44-4c1f-9b43-6d1f1f0e2a11", rsa_key(0)),
            },
            409,
            "key_mismatch",
        ),
    ]


@pytest_twisted.ensureDeferred
async def test_malformed_moves_and_bad_signatures_change_nothing(api: Api) -> None:
    """Every malformed request, foreign or stale signature and bad grace value is refused with a stable code; the
    account is still not moved and the log did not grow."""
    alice, key_id = await _published(api, "alice", 0)
    size = (await api.client().call("GET", "/api/log/sth", auth=None)).json()["tree_size"]
    for body, status, code in _bad_moves(api, key_id):
        reply = await alice.call("POST", "/api/account/move", json_body=body)
        assert (reply.status, reply.json()["error"]) == (status, code), (body, reply.body)
    for raw, content_type in ((b"{", "application/json"), (b"[]", "application/json"), (b"{}", "text/plain")):
        reply = await alice.call("POST", "/api/account/move", data=raw, headers={"Content-Type": content_type})
        assert reply.status in (400, 415)
    nobody = await api.client().call("POST", "/api/account/move", json_body={"to": NEW}, auth=None)
    assert nobody.status == 401
    assert (await _state(alice))["moved"] is False
    assert (await api.client().call("GET", "/api/log/sth", auth=None)).json()["tree_size"] == size
    user = await api.database.run(get_user_txn, "alice")
    assert user is not None and user.moved_to is None


@pytest_twisted.ensureDeferred
async def test_forwarding_needs_outbound_mail(open_api: Api) -> None:
    """Without an outbound queue the appliance cannot forward: grace_days above 0 is 422, 0 switches."""
    alice, key_id = await _published(open_api, "alice", 0)
    record = _moved(open_api, "alice", key_id, rsa_key(0))
    reply = await alice.call("POST", "/api/account/move", json_body={"to": NEW, "grace_days": 30, "record": record})
    assert (reply.status, reply.json()["error"]) == (422, "remote_delivery_disabled")
    record = _moved(open_api, "alice", key_id, rsa_key(0), grace_days=0)
    reply = await alice.call("POST", "/api/account/move", json_body={"to": NEW, "grace_days": 0, "record": record})
    assert reply.status == 201 and reply.json()["forward_until_ms"] == record["created_ms"]


def _brought(key: rsa.RSAPrivateKey, address: str, key_id: str) -> dict[str, str]:
    return {
        "key_id": key_id,
        "public_key": _b64(public_key_der(key)),
        "signature": _b64(sign_brought_key(key, address, key_id)),
    }


def _bring_body(
    holder: rsa.RSAPrivateKey, address: str, keys: list[dict[str, str]], key_block: bytes | None = None, **extra: Any
) -> dict[str, Any]:
    statement = key_block_change_statement(address, [k["key_id"] for k in keys], key_block or b"")
    body: dict[str, Any] = {"address": address, "keys": keys, "signature": _b64(sign_rsa(holder, statement))}
    if key_block is not None:
        body["key_block"] = _b64(key_block)
    body.update(extra)
    return body


OLD_ID = "0b6a4a52-1111-4c1f-9b43-6d1f1f0e2a11"


@pytest_twisted.ensureDeferred
async def test_brought_keys_are_proven_and_become_sealable(api: Api) -> None:
    """A key brought along with its own signature over the account's address, in a request the account's current
    key signed, is registered (and the key block replaced); envelopes sealed to it are then accepted."""
    bob, _bob_key_id = await _published(api, "bob", 1)
    carol, carol_key_id = await _published(api, "carol", 2)
    address = "bob@example.org"
    old = rsa_key(3)
    user = await api.database.run(get_user_txn, "bob")
    assert user is not None
    version = user.key_block_version

    refusals: list[tuple[dict[str, Any], int, str]] = [
        (_bring_body(rsa_key(1), address, [dict(_brought(old, address, OLD_ID), signature=_b64(b"x" * 256))]),
         400, "invalid_key"),
        (_bring_body(rsa_key(1), address, [_brought(old, "mallory@example.org", OLD_ID)]), 400, "invalid_key"),
        (_bring_body(rsa_key(1), address, [_brought(rsa_key(1), address, OLD_ID)]), 400, "invalid_key"),
        (_bring_body(rsa_key(4), address, [_brought(old, address, OLD_ID)]), 403, "invalid_signature"),
        (dict(_bring_body(rsa_key(1), address, [_brought(old, address, OLD_ID)], b"signed block"),
              key_block=_b64(b"another block")), 403, "invalid_signature"),
        (_bring_body(rsa_key(1), "carol@example.org", [_brought(old, "carol@example.org", OLD_ID)]), 400,
         "invalid_request"),
        (_bring_body(rsa_key(1), address, [_brought(old, address, carol_key_id)]), 409, "key_id_taken"),
        (_bring_body(rsa_key(1), address, []), 400, "invalid_request"),
        (_bring_body(rsa_key(1), address, [{"key_id": OLD_ID}]), 400, "invalid_request"),
        (_bring_body(rsa_key(1), address, [_brought(old, address, OLD_ID)] * 2), 400, "invalid_request"),
        (_bring_body(rsa_key(1), address, [_brought(old, address, "not-a-uuid")]), 400, "invalid_key"),
        (_bring_body(rsa_key(1), address, [_brought(old, address, OLD_ID)], unknown=1), 400, "invalid_request"),
    ]  # fmt: skip
    for body, status, code in refusals:
        reply = await bob.call("POST", "/api/account/brought-keys", json_body=body)
        assert (reply.status, reply.json().get("error")) == (status, code), (code, reply.body)
    assert (await bob.call("GET", "/api/account/brought-keys")).json()["keys"] == []

    block = b"the new key block, encrypted by the client"
    body = _bring_body(rsa_key(1), address, [_brought(old, address, OLD_ID)], block, key_block_version=version)
    reply = await bob.call("POST", "/api/account/brought-keys", json_body=body)
    assert reply.status == 201, reply.body
    assert reply.json() == {"added": [OLD_ID], "key_block_version": version + 1}
    account = (await bob.call("GET", "/api/account")).json()
    assert base64.b64decode(account["key_block"]) == block
    stale = await bob.call("POST", "/api/account/brought-keys", json_body=body)
    assert (stale.status, stale.json()["error"]) == (412, "version_conflict")
    again = _bring_body(rsa_key(1), address, [_brought(old, address, OLD_ID)])
    assert (await bob.call("POST", "/api/account/brought-keys", json_body=again)).json()["added"] == []
    listed = (await bob.call("GET", "/api/account/brought-keys")).json()["keys"]
    assert listed == [{"key_id": OLD_ID, "public_key": _b64(public_key_der(old)), "address": address}]
    # Carol cannot bring the same key id: it names Bob's brought key now.
    taken = _bring_body(rsa_key(2), "carol@example.org", [_brought(old, "carol@example.org", OLD_ID)])
    assert (await carol.call("POST", "/api/account/brought-keys", json_body=taken)).status == 409

    assert user is not None
    sealable = await api.database.run(sealable_key_ids_txn, [user.id])
    assert set(sealable[user.id]) == {_bob_key_id, OLD_ID}


@pytest_twisted.ensureDeferred
async def test_brought_objects_and_digests(api: Api) -> None:
    """POST /api/store/{path} stores an object brought along (Mail/ too) with its time, once: the same bytes are
    200 unchanged, others 409; the digests list every object's SHA-256."""
    alice = await signed_in(api, "alice", PASSWORD, 0)
    path = "/api/store/Mail/In/1765000000000_42"
    stamp = 1_765_000_000_000
    reply = await alice.call("POST", path + f"?modified_ms={stamp}", data=b"ciphertext one")
    assert reply.status == 201 and reply.json()["modified_ms"] == stamp
    same = await alice.call("POST", path, data=b"ciphertext one")
    assert (same.status, same.json()["unchanged"]) == (200, True)
    other = await alice.call("POST", path, data=b"ciphertext two")
    assert (other.status, other.json()["error"]) == (409, "conflict")
    future = await alice.call("POST", "/api/store/Settings/x?modified_ms=99999999999999", data=b"s")
    assert future.status == 201 and future.json()["modified_ms"] <= int(time.time() * 1000) + 1000
    for bad in ("/api/store/Mail/../x", "/api/store/Mail/In/x?modified_ms=-1", "/api/store/a?modified_ms=1e3"):
        assert (await alice.call("POST", bad, data=b"x")).status in (400, 404), bad

    digests = (await alice.call("GET", "/api/account/digests")).json()
    assert digests["next"] is None
    found = {entry["path"]: entry for entry in digests["objects"]}
    assert found["Mail/In/1765000000000_42"]["sha256"] == hashlib.sha256(b"ciphertext one").hexdigest()
    assert found["Mail/In/1765000000000_42"]["modified_ms"] == stamp
    page = (await alice.call("GET", "/api/account/digests?limit=1")).json()
    assert len(page["objects"]) == 1 and page["next"] == page["objects"][0]["path"]
    rest = (await alice.call("GET", "/api/account/digests?limit=1&after=" + page["next"])).json()
    assert rest["objects"][0]["path"] != page["next"]
    for query in ("limit=0", "limit=201", "limit=x", "prefix=/etc"):
        reply = await alice.call("GET", "/api/account/digests?" + query)
        assert reply.status == 400, query


@pytest_twisted.ensureDeferred
async def test_finish_deletes_only_after_the_move_and_forwarding(api: Api) -> None:
    """Nothing is deleted before the move, nor while received mail waits to be forwarded; then every object."""
    alice, key_id = await _published(api, "alice", 0)
    for path in ("Mail/In/1765000000000_1", "Mail/In_Json/1765000000000_1", "Settings/x"):
        assert (await alice.call("POST", "/api/store/" + path, data=b"sealed")).status == 201
    wrong = await alice.call("POST", "/api/account/move/finish", json_body={"delete": "yes"})
    assert wrong.status == 400
    early = await alice.call("POST", "/api/account/move/finish", json_body={"delete": True})
    assert (early.status, early.json()["error"]) == (409, "not_moved")
    record = _moved(api, "alice", key_id, rsa_key(0))
    assert (
        await alice.call("POST", "/api/account/move", json_body={"to": NEW, "grace_days": 30, "record": record})
    ).status == 201
    assert (await _state(alice))["pending"] == 1
    pending = await alice.call("POST", "/api/account/move/finish", json_body={"delete": True})
    assert (pending.status, pending.json()["error"]) == (409, "forwarding_pending")
    assert len((await alice.call("GET", "/api/store?prefix=")).json()["objects"]) == 3


@pytest_twisted.ensureDeferred
async def test_copied_marks_are_checked(api: Api) -> None:
    """Marks are 1 to 1000 key bases of the form <digits>_<digits>; once marked, mail is never pending."""
    alice, key_id = await _published(api, "alice", 0)
    for bad in ([], ["x"], ["1_2"] * 1001, "1_2", [1]):
        reply = await alice.call("POST", "/api/account/move/copied", json_body={"key_bases": bad})
        assert reply.status == 400, bad
    assert (await alice.call("POST", "/api/store/Mail/In/1765000000000_7", data=b"sealed")).status == 201
    marked = await alice.call("POST", "/api/account/move/copied", json_body={"key_bases": ["1765000000000_7"]})
    assert marked.json() == {"marked": 1}
    record = _moved(api, "alice", key_id, rsa_key(0), grace_days=0)
    assert (
        await alice.call("POST", "/api/account/move", json_body={"to": NEW, "grace_days": 0, "record": record})
    ).status == 201
    state = await _state(alice)
    assert state["pending"] == 0 and state["mail"] == {"copied": 1}
    done = await alice.call("POST", "/api/account/move/finish", json_body={"delete": True})
    assert done.json() == {"deleted": 1}
    assert (await alice.call("GET", "/api/store?prefix=")).json()["objects"] == []
    user = await api.database.run(get_user_txn, "alice")
    assert user is not None and user.moved_to == NEW and user.used_bytes == 0


@pytest.mark.parametrize("grace", [0, 365])
def test_grace_bounds_are_inclusive(grace: int) -> None:
    """0 and 365 days are both valid grace periods in a record."""
    fields = moved_record_fields(OLD_ID, ["a@b.example"], NEW, created_ms=1, forward_until_ms=1 + grace * DAY_MS)
    assert verify_moved_record(sign_moved_record(fields, rsa_key(0)), public_key_der(rsa_key(0))).to == NEW
