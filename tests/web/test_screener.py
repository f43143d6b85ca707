"""The screener for first-time senders: unknown senders' mail in Mail/Screener, approved ones' in the inbox,
blocked ones refused with 550 5.7.1; writing to someone approves them; a valid, fresh, unspent Hashcash stamp
for the recipient lets a first message by, a replayed or weak one does not; and the API that sets it."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_twisted

from mailiverse import hashcash
from mailiverse.contracts import Envelope, MessageRejected
from mailiverse.delivery.pipeline import Delivery
from mailiverse.spool import SpooledMessage
from mailiverse.store.db import Database
from mailiverse.store.objects import list_objects_txn
from mailiverse.store.users import get_user_txn
from tests.support.webapi import Api, ApiClient, make_api, signed_in

PASSWORD = "correct horse battery staple"
ALICE = "alice@example.org"


@pytest.fixture
def served(database: Database, tmp_path: Path) -> Iterator[tuple[Api, Delivery]]:
    built, delivery = make_api(database, tmp_path)
    try:
        yield built, delivery
    finally:
        delivery.stop()


def mail(sender: str, subject: str, extra: str = "") -> bytes:
    return (
        f"{extra}From: <{sender}>\r\nTo: {ALICE}\r\nSubject: {subject}\r\nMessage-ID: <{subject}@t>\r\n\r\nHello.\r\n"
    ).encode()


async def receive(delivery: Delivery, sender: str, raw: bytes, to: tuple[str, ...] = (ALICE,)) -> None:
    recipients = [r for r in [await delivery.resolve(address, sender) for address in to] if r is not None]
    envelope = Envelope("192.0.2.9", "mx.remote.test", sender, "mail.example.org", ("example.org",))
    await delivery.deliver(SpooledMessage(size=len(raw), memory=raw), sender, recipients, envelope=envelope)


async def folders(api: Api, name: str = "alice") -> list[str]:
    user = await api.database.run(get_user_txn, name)
    assert user is not None
    return sorted(i.path.rsplit("/", 1)[0] for i in await api.database.run(list_objects_txn, user.id, "Mail/"))


async def screening(api: Api) -> ApiClient:
    alice = await signed_in(api, "alice", PASSWORD, 0)
    reply = await alice.call("PUT", "/api/screener", json_body={"enabled": True})
    assert reply.json() == {"enabled": True, "approved": 0, "blocked": 0}
    return alice


@pytest_twisted.ensureDeferred
async def test_off_by_default_and_then_first_time_senders_are_screened(served: tuple[Api, Delivery]) -> None:
    api, delivery = served
    alice = await signed_in(api, "alice", PASSWORD, 0)
    assert (await alice.call("GET", "/api/screener")).json()["enabled"] is False
    await receive(delivery, "ann@remote.test", mail("ann@remote.test", "before"))
    assert await folders(api) == ["Mail/In", "Mail/In_Json"]
    assert (await alice.call("PUT", "/api/screener", json_body={"enabled": True})).status == 200
    await receive(delivery, "ann@remote.test", mail("ann@remote.test", "after"))
    assert await folders(api) == ["Mail/In", "Mail/In_Json", "Mail/Screener", "Mail/Screener_Json"]


@pytest_twisted.ensureDeferred
async def test_approve_moves_later_mail_to_the_inbox_and_block_refuses(served: tuple[Api, Delivery]) -> None:
    api, delivery = served
    alice = await screening(api)
    approve = await alice.call(
        "POST", "/api/screener/senders", json_body={"address": "Ann@Remote.test", "verdict": "approved"}
    )
    assert approve.json() == {"address": "ann@remote.test", "verdict": "approved"}
    await receive(delivery, "bounces@list.remote.test", mail("ann@remote.test", "approved"))
    assert await folders(api) == ["Mail/In", "Mail/In_Json"]
    await alice.call("POST", "/api/screener/senders", json_body={"address": "ann@remote.test", "verdict": "blocked"})
    with pytest.raises(MessageRejected) as refused:
        await receive(delivery, "ann@remote.test", mail("ann@remote.test", "blocked"))
    assert (refused.value.code, refused.value.enhanced) == (550, "5.7.1")
    assert await folders(api) == ["Mail/In", "Mail/In_Json"]
    assert (await alice.call("GET", "/api/screener")).json() == {"enabled": True, "approved": 0, "blocked": 1}


@pytest_twisted.ensureDeferred
async def test_a_blocking_recipient_gets_nothing_while_another_gets_the_message(served: tuple[Api, Delivery]) -> None:
    api, delivery = served
    alice = await screening(api)
    await signed_in(api, "bob", PASSWORD, 1)
    await alice.call("POST", "/api/screener/senders", json_body={"address": "ann@remote.test", "verdict": "blocked"})
    await receive(delivery, "ann@remote.test", mail("ann@remote.test", "both"), (ALICE, "bob@example.org"))
    assert await folders(api) == []
    assert await folders(api, "bob") == ["Mail/In", "Mail/In_Json"]


@pytest_twisted.ensureDeferred
async def test_writing_to_someone_approves_them(served: tuple[Api, Delivery]) -> None:
    api, delivery = served
    alice = await screening(api)
    sent = await alice.call(
        "POST", "/api/send", json_body={"to": ["carol@remote.test"], "subject": "hi", "text": "Hello Carol."}
    )
    assert sent.status == 200, sent.body
    await receive(delivery, "carol@remote.test", mail("carol@remote.test", "reply"))
    assert "Mail/In" in await folders(api)
    assert (await alice.call("GET", "/api/screener")).json()["approved"] == 1


@pytest_twisted.ensureDeferred
async def test_a_hashcash_stamp_lets_one_first_message_by(served: tuple[Api, Delivery]) -> None:
    api, delivery = served
    await screening(api)
    now = datetime.datetime.now(datetime.UTC)
    stamp = hashcash.mint(ALICE, bits=20, now=now)
    await receive(delivery, "dan@remote.test", mail("dan@remote.test", "stamped", f"X-Hashcash: {stamp}\r\n"))
    assert await folders(api) == ["Mail/In", "Mail/In_Json"]
    # The same stamp again (a replay), a weak one, one for someone else: all screened.
    weak = hashcash.mint(ALICE, bits=12, now=now)
    other = hashcash.mint("bob@example.org", bits=20, now=now)
    for subject, value in (("replayed", stamp), ("weak", weak), ("other", other)):
        await receive(delivery, "dan@remote.test", mail("dan@remote.test", subject, f"X-Hashcash: {value}\r\n"))
    paths = await folders(api)
    assert paths.count("Mail/Screener") == 3 and paths.count("Mail/In") == 1


@pytest_twisted.ensureDeferred
async def test_send_can_stamp_first_contact_mail(served: tuple[Api, Delivery]) -> None:
    api, _delivery = served
    alice = await signed_in(api, "alice", PASSWORD, 0)
    sent = await alice.call(
        "POST",
        "/api/send",
        json_body={"to": ["erin@remote.test"], "subject": "first", "text": "Hello Erin.", "hashcash": True},
    )
    assert sent.status == 200, sent.body
    (queued,) = api.outbound.submitted
    stamps = [
        line.split(b": ", 1)[1].decode() for line in queued.message.split(b"\r\n") if line.startswith(b"X-Hashcash")
    ]
    assert len(stamps) == 1
    hashcash.check(stamps[0], resource="erin@remote.test", now=datetime.datetime.now(datetime.UTC))


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PUT", "/api/screener", {"enabled": "yes"}),
        ("PUT", "/api/screener", {}),
        ("POST", "/api/screener/senders", {"address": "x@y.test", "verdict": "maybe"}),
        ("POST", "/api/screener/senders", {"address": "not an address", "verdict": "blocked"}),
        ("POST", "/api/screener/senders", {"address": "x@y.test"}),
        ("POST", "/api/send", {"to": ["a@b.test"], "subject": "s", "text": "t", "hashcash": "yes"}),
        (
            "POST",
            "/api/send",
            {"to": [f"r{i}@b.test" for i in range(11)], "subject": "s", "text": "t", "hashcash": True},
        ),
    ],
)
@pytest_twisted.ensureDeferred
async def test_malformed_requests_are_refused(
    served: tuple[Api, Delivery], method: str, path: str, body: dict[str, object]
) -> None:
    api, _delivery = served
    alice = await signed_in(api, "alice", PASSWORD, 0)
    reply = await alice.call(method, path, json_body=body)
    assert (reply.status, reply.json()["error"]) == (400, "invalid_request")


@pytest_twisted.ensureDeferred
async def test_mail_between_local_users_is_screened_too(served: tuple[Api, Delivery]) -> None:
    """Bob's first message to screening Alice waits in her screener; one with a Hashcash stamp does not; once
    she blocks him, his mail is refused (403 recipient_refused, nothing sent); once she wrote to him, he is in."""
    api, _delivery = served
    alice = await screening(api)
    bob = await signed_in(api, "bob", PASSWORD, 1)
    first = await bob.call("POST", "/api/send", json_body={"to": [ALICE], "subject": "hello", "text": "Hi."})
    assert first.status == 200, first.body
    assert await folders(api) == ["Mail/Screener", "Mail/Screener_Json"]
    stamped = await bob.call(
        "POST", "/api/send", json_body={"to": [ALICE], "subject": "stamped", "text": "Hi.", "hashcash": True}
    )
    assert stamped.status == 200, stamped.body
    assert (await folders(api)).count("Mail/In") == 1
    await alice.call("POST", "/api/screener/senders", json_body={"address": "bob@example.org", "verdict": "blocked"})
    refused = await bob.call("POST", "/api/send", json_body={"to": [ALICE], "subject": "again", "text": "Hi."})
    assert (refused.status, refused.json()["error"]) == (403, "recipient_refused")
    await alice.call("POST", "/api/screener/senders", json_body={"address": "bob@example.org", "verdict": None})
    assert (
        await alice.call("POST", "/api/send", json_body={"to": ["bob@example.org"], "subject": "hi", "text": "Hi"})
    ).status == 200
    welcome = await bob.call("POST", "/api/send", json_body={"to": [ALICE], "subject": "welcome", "text": "Hi."})
    assert welcome.status == 200
    assert (await folders(api)).count("Mail/In") == 2
