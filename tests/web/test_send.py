"""Sending through the API: local delivery through the pipeline, remote via IOutbound,
the encrypted Sent copy, key lookup."""

from __future__ import annotations

import base64
import json

import pytest_twisted
from zope.interface.verify import verifyObject

from mailiverse.contracts import IOutbound
from mailiverse.crypto.formats import open_mail_object
from mailiverse.keylog.records import key_record_fields, sign_key_record
from mailiverse.store.objects import list_objects_txn, read_object_txn
from mailiverse.store.users import get_user_txn
from mailiverse.testing import MemoryOutbound
from tests.support.webapi import Api, ApiClient, rsa_key, signed_in

PASSWORD = "send password"


async def _user(api: Api, name: str, index: int) -> ApiClient:
    return await signed_in(api, name, PASSWORD, index)


async def _objects(api: Api, name: str, prefix: str) -> list[str]:
    user = await api.database.run(get_user_txn, name)
    assert user is not None
    return [o.path for o in await api.database.run(list_objects_txn, user.id, prefix)]


async def _open(api: Api, name: str, path: str, key_index: int) -> bytes:
    user = await api.database.run(get_user_txn, name)
    assert user is not None
    return open_mail_object(rsa_key(key_index), await api.database.run(read_object_txn, user.id, path))


def test_memory_outbound_provides_interface() -> None:
    """MemoryOutbound provides IOutbound."""
    assert verifyObject(IOutbound, MemoryOutbound())


@pytest_twisted.ensureDeferred
async def test_local_send_delivers_and_keeps_sent_copy(api: Api) -> None:
    """A structured message to a local user lands in their Mail/In, and an encrypted Sent copy + twin
    in the sender's store."""
    alice = await _user(api, "alice", 0)
    await _user(api, "bob", 1)
    reply = await alice.call(
        "POST", "/api/send", json_body={"to": ["Bob@Example.org"], "subject": "hello", "text": "hi bob\n"}
    )
    assert reply.status == 200, reply.body
    answer = reply.json()
    assert answer["from"] == "alice@example.org"
    assert answer["local"] == ["bob@example.org"] and answer["remote"] == []
    assert api.outbound.submitted == []
    inbox = await _objects(api, "bob", "Mail/In/")
    assert len(inbox) == 1
    delivered = await _open(api, "bob", inbox[0], 1)
    assert b"hi bob" in delivered and b"Subject: hello" in delivered
    sent = answer["sent"]
    assert sent.startswith("Mail/Sent/")
    assert await _objects(api, "alice", "Mail/Sent") == [sent, sent.replace("Mail/Sent/", "Mail/Sent_Json/")]
    assert b"hi bob" in await _open(api, "alice", sent, 0)
    twin = json.loads(await _open(api, "alice", sent.replace("Mail/Sent/", "Mail/Sent_Json/"), 0))
    assert twin["original"] == sent


@pytest_twisted.ensureDeferred
async def test_remote_send_goes_to_outbound(api: Api) -> None:
    """A raw message to a remote address goes to IOutbound with the user's envelope sender;
    Bcc stays out of the headers."""
    alice = await _user(api, "alice", 0)
    raw = b"From: Alice <alice@mail.example.net>\r\nTo: carol@remote.test\r\nSubject: x\r\n\r\nbody\r\n"
    reply = await alice.call(
        "POST",
        "/api/send",
        json_body={"message": base64.b64encode(raw).decode(), "recipients": ["carol@remote.test", "dave@remote.test"]},
    )
    assert reply.status == 200, reply.body
    assert reply.json()["queue_id"] == "q1"
    [submitted] = api.outbound.submitted
    assert submitted.user == "alice"
    assert submitted.mail_from == "alice@mail.example.net"
    assert submitted.recipients == ("carol@remote.test", "dave@remote.test")
    assert submitted.message == raw


@pytest_twisted.ensureDeferred
async def test_remote_disabled_without_outbound(open_api: Api) -> None:
    """Without an outbound queue, remote recipients get 422 remote_delivery_disabled and nothing is stored."""
    alice = await _user(open_api, "alice", 0)
    reply = await alice.call("POST", "/api/send", json_body={"to": ["x@remote.test"], "text": "t"})
    assert (reply.status, reply.json()["error"]) == (422, "remote_delivery_disabled")
    assert await _objects(open_api, "alice", "Mail/") == []


@pytest_twisted.ensureDeferred
async def test_from_must_be_own_address(api: Api) -> None:
    """A From that is not one of the user's addresses is refused with 403 sender_not_allowed."""
    alice = await _user(api, "alice", 0)
    await _user(api, "bob", 1)
    raw = b"From: bob@example.org\r\nTo: bob@example.org\r\n\r\nforged\r\n"
    reply = await alice.call("POST", "/api/send", json_body={"message": base64.b64encode(raw).decode()})
    assert (reply.status, reply.json()["error"]) == (403, "sender_not_allowed")
    structured = await alice.call("POST", "/api/send", json_body={"to": ["bob@example.org"], "from": "bob@example.org"})
    assert structured.status == 403
    assert await _objects(api, "bob", "Mail/") == []


@pytest_twisted.ensureDeferred
async def test_unknown_local_recipient(api: Api) -> None:
    """A local address without an account is refused before anything is sent."""
    alice = await _user(api, "alice", 0)
    reply = await alice.call("POST", "/api/send", json_body={"to": ["nobody@example.org", "x@remote.test"]})
    assert (reply.status, reply.json()["error"]) == (400, "unknown_recipient")
    assert api.outbound.submitted == []


@pytest_twisted.ensureDeferred
async def test_header_injection_refused(api: Api) -> None:
    """A subject with a line break cannot inject headers."""
    alice = await _user(api, "alice", 0)
    reply = await alice.call(
        "POST", "/api/send", json_body={"to": ["x@remote.test"], "subject": "a\r\nBcc: y@evil.test"}
    )
    assert reply.status == 400
    assert api.outbound.submitted == []


@pytest_twisted.ensureDeferred
async def test_public_key_lookup(api: Api) -> None:
    """Key lookup returns a local user's SPKI and fingerprint; other addresses and domains are 404."""
    alice = await _user(api, "alice", 0)
    bob = await _user(api, "bob", 1)
    assert (await alice.call("GET", "/api/keys/bob@example.org")).status == 404  # nothing published yet
    addresses = [f"bob@{domain}" for domain in api.app.domains]
    record = sign_key_record(key_record_fields(rsa_key(1).public_key(), addresses, created_ms=1), rsa_key(1))
    assert (await bob.call("POST", "/api/keys", json_body={"records": [record]})).status == 201
    reply = await alice.call("GET", "/api/keys/Bob@mail.example.net")
    assert reply.status == 200
    answer = reply.json()
    from mailiverse.crypto.keys import public_key_der, public_key_fingerprint

    assert base64.b64decode(answer["public_key"]) == public_key_der(rsa_key(1))
    assert answer["fingerprint"] == public_key_fingerprint(rsa_key(1))
    assert (answer["address"], answer["format"], answer["bits"]) == ("bob@mail.example.net", "v2", 2048)
    assert answer["record"] == record and answer["key_id"] == record["key_id"]
    for address in ("nobody@example.org", "bob@remote.test", "not-an-address"):
        missing = await alice.call("GET", "/api/keys/" + address)
        assert (missing.status, missing.json()["error"]) == (404, "not_found")
    assert (await api.client().call("GET", "/api/keys/bob@example.org", auth=None)).status == 401
