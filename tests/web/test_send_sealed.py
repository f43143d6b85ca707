"""``POST /api/send/sealed`` (docs/e2e.md §2): what a device sealed is stored byte for byte, or carried.

The appliance never opens these envelopes; the tests open them with the recipients' keys to show they arrived
whole, and check what the server does check: the key each envelope names, the key base, the shape and the
sizes of the request, the recipients, and that a remote recipient's envelope leaves in a carrier whose
visible parts say nothing of the message.
"""

from __future__ import annotations

import base64
import time
from typing import Any

import pytest_twisted

from mailiverse.crypto.formats import open_mail_object, seal_mail_object
from mailiverse.keylog.records import key_record_fields, sign_key_record
from mailiverse.mime.carrier import CARRIER_SUBJECT, parse_carrier
from mailiverse.store.objects import list_objects_txn, read_object_txn
from mailiverse.store.users import get_user_txn
from tests.support.webapi import Api, ApiClient, rsa_key, signed_in

PASSWORD = "sealed send password"
CANARY = b"canary-7f3e9a sealed on the device"


async def _published(api: Api, name: str, index: int) -> tuple[ApiClient, str]:
    """A signed-in user with a published key record; its key id."""
    client = await signed_in(api, name, PASSWORD, index)
    addresses = [f"{name}@{domain}" for domain in api.app.domains]
    record = sign_key_record(key_record_fields(rsa_key(index).public_key(), addresses, created_ms=1000), rsa_key(index))
    reply = await client.call("POST", "/api/keys", json_body={"records": [record]})
    assert reply.status == 201, reply.body
    return client, str(reply.json()["key_id"])


def _key_base() -> str:
    return f"{time.time_ns() // 10**6}_{int.from_bytes(__import__('os').urandom(7), 'big')}"


def _objects(index: int, key_id: str, marker: bytes = CANARY) -> dict[str, str]:
    public = rsa_key(index).public_key()
    raw = b"From: alice@example.org\r\nTo: bob@example.org\r\nSubject: " + marker + b"\r\n\r\n" + marker + b"\r\n"
    return {
        "key_id": key_id,
        "original": base64.b64encode(seal_mail_object("v2", public, raw)).decode(),
        "twin": base64.b64encode(seal_mail_object("v2", public, b'{"subject":"' + marker + b'"}')).decode(),
    }


async def _stored(api: Api, name: str, prefix: str) -> dict[str, bytes]:
    user = await api.database.run(get_user_txn, name)
    assert user is not None
    paths = [o.path for o in await api.database.run(list_objects_txn, user.id, prefix)]
    return {path: await api.database.run(read_object_txn, user.id, path) for path in paths}


async def _send(client: ApiClient, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    reply = await client.call("POST", "/api/send/sealed", json_body=body)
    return reply.status, reply.json()


@pytest_twisted.ensureDeferred
async def test_local_envelopes_are_stored_as_they_came(api: Api) -> None:
    """Bob's copy and Alice's Sent copy are the uploaded bytes, under the key base the device chose."""
    alice, alice_key = await _published(api, "alice", 0)
    _bob, bob_key = await _published(api, "bob", 1)
    key_base = _key_base()
    envelope = _objects(1, bob_key)
    sent = _objects(0, alice_key)
    status, answer = await _send(
        alice,
        {"key_base": key_base, "envelopes": [{"to": "Bob@example.org", **envelope}], "sent": sent},
    )
    assert status == 200, answer
    assert answer == {
        "from": "alice@example.org",
        "local": ["bob@example.org"],
        "remote": [],
        "queue_id": None,
        "sent": f"Mail/Sent/{key_base}",
        "key_base": key_base,
    }
    inbox = await _stored(api, "bob", "Mail/")
    assert inbox == {
        f"Mail/In/{key_base}": base64.b64decode(envelope["original"]),
        f"Mail/In_Json/{key_base}": base64.b64decode(envelope["twin"]),
    }
    assert CANARY in open_mail_object(rsa_key(1), inbox[f"Mail/In/{key_base}"])
    mine = await _stored(api, "alice", "Mail/Sent")
    assert mine[f"Mail/Sent/{key_base}"] == base64.b64decode(sent["original"])
    assert api.outbound.submitted == []


@pytest_twisted.ensureDeferred
async def test_an_envelope_for_another_key_is_refused_and_nothing_stored(api: Api) -> None:
    """A key id the recipient does not hold now (stale, or someone else's) is 409 stale_key; nothing is stored
    for anyone, the Sent copy included; a recipient without a published key cannot get sealed mail."""
    alice, alice_key = await _published(api, "alice", 0)
    _bob, bob_key = await _published(api, "bob", 1)
    await signed_in(api, "carol", PASSWORD, 2)  # no key record
    for to, key_id in (("bob@example.org", alice_key), ("carol@example.org", "0f0e0d0c-aaaa-bbbb-cccc-000000000000")):
        status, answer = await _send(
            alice,
            {"key_base": _key_base(), "envelopes": [{"to": to, **_objects(1, key_id)}], "sent": _objects(0, alice_key)},
        )
        assert (status, answer["error"]) == (409, "stale_key"), answer
    assert await _stored(api, "bob", "Mail/") == {}
    assert await _stored(api, "alice", "Mail/") == {}
    status, answer = await _send(
        alice, {"key_base": _key_base(), "envelopes": [{"to": "nobody@example.org", **_objects(1, bob_key)}]}
    )
    assert (status, answer["error"]) == (400, "unknown_recipient")


@pytest_twisted.ensureDeferred
async def test_a_taken_key_base_is_a_conflict(api: Api) -> None:
    alice, _ = await _published(api, "alice", 0)
    _bob, bob_key = await _published(api, "bob", 1)
    key_base = _key_base()
    body = {"key_base": key_base, "envelopes": [{"to": "bob@example.org", **_objects(1, bob_key)}]}
    assert (await _send(alice, body))[0] == 200
    status, answer = await _send(alice, body)
    assert (status, answer["error"]) == (409, "conflict")
    assert len(await _stored(api, "bob", "Mail/In/")) == 1


@pytest_twisted.ensureDeferred
async def test_a_remote_envelope_leaves_in_a_carrier(api: Api) -> None:
    """A recipient elsewhere gets a carrier through the outbound queue: From and To, the fixed subject, the
    envelope in the attachment byte for byte; nothing of the message is in its clear parts."""
    alice, alice_key = await _published(api, "alice", 0)
    envelope = _objects(5, "11111111-2222-3333-4444-555555555555")
    key_base = _key_base()
    status, answer = await _send(
        alice,
        {
            "key_base": key_base,
            "envelopes": [{"to": "carol@remote.test", **envelope}],
            "sent": _objects(0, alice_key),
        },
    )
    assert status == 200, answer
    assert answer["remote"] == ["carol@remote.test"] and answer["queue_id"]
    (queued,) = api.outbound.submitted
    assert queued.recipients == ("carol@remote.test",) and queued.mail_from == "alice@example.org"
    carrier_bytes = queued.message
    assert CANARY not in carrier_bytes
    assert f"Subject: {CARRIER_SUBJECT}".encode() in carrier_bytes
    carrier = parse_carrier(carrier_bytes, 1024 * 1024)
    assert carrier is not None and carrier.key_base == key_base
    (carried,) = carrier.envelopes
    assert carried.key_id == envelope["key_id"]
    assert carried.original == base64.b64decode(envelope["original"])
    assert carried.twin == base64.b64decode(envelope["twin"])


@pytest_twisted.ensureDeferred
async def test_malformed_requests_get_clear_errors(api: Api) -> None:
    """Every malformed request is a 400 (or 413) naming what is wrong, and nothing is stored."""
    alice, _ = await _published(api, "alice", 0)
    _bob, bob_key = await _published(api, "bob", 1)
    good = {"to": "bob@example.org", **_objects(1, bob_key)}
    cases: list[tuple[dict[str, Any], str]] = [
        ({"key_base": "x_1", "envelopes": [good]}, "key_base"),
        ({"key_base": "1000_1", "envelopes": [good]}, "time now"),
        ({"key_base": _key_base(), "envelopes": []}, "envelopes"),
        ({"key_base": _key_base(), "envelopes": [good], "surprise": 1}, "unknown member"),
        ({"key_base": _key_base(), "envelopes": [{**good, "original": "!!"}]}, "base64"),
        ({"key_base": _key_base(), "envelopes": [{**good, "key_id": "a b"}]}, "key_id"),
        ({"key_base": _key_base(), "envelopes": [{**good, "organisation": "example.org"}]}, "either"),
        ({"key_base": _key_base(), "envelopes": [good, good]}, "distinct"),
        ({"key_base": _key_base(), "envelopes": [good], "stamps": ["a\nb"]}, "stamp"),
        ({"key_base": _key_base(), "envelopes": [{**good, "to": "not an address"}]}, "address"),
        ({"key_base": _key_base(), "envelopes": [good], "from": "mallory@example.org"}, "From"),
    ]
    for body, words in cases:
        status, answer = await _send(alice, body)
        assert status in (400, 403), (body, answer)
        assert words.lower() in answer["message"].lower(), (words, answer)
    huge = {**good, "original": base64.b64encode(b"x" * (2 * 1024 * 1024)).decode()}
    status, answer = await _send(alice, {"key_base": _key_base(), "envelopes": [huge]})
    assert status in (400, 413), answer
    assert await _stored(api, "bob", "Mail/") == {}


@pytest_twisted.ensureDeferred
async def test_the_sent_copy_may_have_a_key_base_of_its_own(api: Api) -> None:
    """A message to oneself: the Inbox copy and the Sent copy get distinct names (never the same one twice)."""
    alice, alice_key = await _published(api, "alice", 0)
    key_base, sent_base = _key_base(), _key_base()
    envelope = {"to": "alice@example.org", **_objects(0, alice_key)}
    same = {"key_base": key_base, "envelopes": [envelope], "sent": {**_objects(0, alice_key), "key_base": key_base}}
    status, answer = await _send(alice, same)
    assert (status, answer["error"]) == (400, "invalid_request") and "its own" in answer["message"]
    body = {"key_base": key_base, "envelopes": [envelope], "sent": {**_objects(0, alice_key), "key_base": sent_base}}
    status, answer = await _send(alice, body)
    assert status == 200 and answer["sent"] == f"Mail/Sent/{sent_base}", answer
    assert sorted(await _stored(api, "alice", "Mail/")) == sorted(
        [f"Mail/In/{key_base}", f"Mail/In_Json/{key_base}", f"Mail/Sent/{sent_base}", f"Mail/Sent_Json/{sent_base}"]
    )
