"""``POST /api/send`` and header safety (issue 16, findings 8 and 9): no header injection through the
structured fields on this machine's Python, and a raw message needs exactly one From of the user's own."""

from __future__ import annotations

import base64

import pytest
import pytest_twisted

from mailiverse.store.objects import list_objects_txn
from mailiverse.store.users import get_user_txn
from tests.support.webapi import Api, ApiClient, signed_in

PASSWORD = "send password"
#: The subject of finding 8, exactly as reported.
FINDING_SUBJECT = "=?utf-8?q?x=0D=0ABcc:=20evil@evil.com?="


async def _user(api: Api, name: str, index: int) -> ApiClient:
    return await signed_in(api, name, PASSWORD, index)


async def _objects(api: Api, name: str) -> list[str]:
    user = await api.database.run(get_user_txn, name)
    assert user is not None
    return [o.path for o in await api.database.run(list_objects_txn, user.id, "Mail/")]


@pytest.mark.parametrize(
    "subject",
    [
        FINDING_SUBJECT,
        "=?utf-8?b?eA0KQmNjOiBldmlsQGV2aWwuY29t?=",
        "=?utf-8?q?x=E2=80=A8Bcc:=20evil@evil.com?=",
        "=?utf-8?q?x=C2=85Bcc:=20evil@evil.com?=",
        "x\u2028Bcc: evil@evil.com",
        "x\x85Bcc: evil@evil.com",
        "x\rBcc: evil@evil.com",
    ],
)
@pytest_twisted.ensureDeferred
async def test_structured_subject_cannot_add_a_bcc(api: Api, subject: str) -> None:
    """A subject with a raw or RFC 2047-encoded line break gets 400 invalid_message; nothing is sent or filed."""
    alice = await _user(api, "alice", 0)
    await _user(api, "bob", 1)
    reply = await alice.call(
        "POST",
        "/api/send",
        json_body={"to": ["bob@example.org", "carol@remote.test"], "subject": subject, "text": "hi"},
    )
    assert (reply.status, reply.json()["error"]) == (400, "invalid_message"), reply.body
    assert "subject" in reply.json()["message"]
    assert api.outbound.submitted == []
    assert await _objects(api, "bob") == [] and await _objects(api, "alice") == []


@pytest.mark.parametrize(
    "head",
    [
        b"From: alice@example.org\r\nFrom\t: ceo@example.org",
        b"From: alice@example.org\r\nFrom : ceo@example.org",
        b"From: alice@example.org, ceo@example.org",
        b"From: alice@example.org,\r\n ceo@example.org",
        b"From: team: alice@example.org;",
        b"From: =?utf-8?q?x=0D=0AFrom:=20ceo@example.org?= <alice@example.org>",
    ],
)
@pytest_twisted.ensureDeferred
async def test_raw_message_with_more_than_one_from_is_refused(api: Api, head: bytes) -> None:
    """A raw message whose From is not exactly one address of the user's own gets 400; nothing is sent."""
    alice = await _user(api, "alice", 0)
    raw = head + b"\r\nTo: carol@remote.test\r\nSubject: s\r\n\r\nbody\r\n"
    reply = await alice.call("POST", "/api/send", json_body={"message": base64.b64encode(raw).decode()})
    assert (reply.status, reply.json()["error"]) == (400, "invalid_message"), reply.body
    assert "From" in reply.json()["message"]
    assert api.outbound.submitted == [] and await _objects(api, "alice") == []


@pytest_twisted.ensureDeferred
async def test_raw_message_with_a_foreign_sender_is_refused(api: Api) -> None:
    """A Sender header naming someone else gets 403 sender_not_allowed; nothing is sent."""
    alice = await _user(api, "alice", 0)
    raw = b"From: alice@example.org\r\nSender: ceo@example.org\r\nTo: carol@remote.test\r\n\r\nbody\r\n"
    reply = await alice.call("POST", "/api/send", json_body={"message": base64.b64encode(raw).decode()})
    assert (reply.status, reply.json()["error"]) == (403, "sender_not_allowed")
    assert api.outbound.submitted == []
