"""``POST /api/move`` (inbox <-> spam folder, renamed in one transaction) and ``POST /api/learn/{spam,ham}``
(a marked message handed to a real rspamd, which learns from it; the appliance keeps nothing)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor

from mailiverse.delivery.rspamd import RspamdClient
from mailiverse.store.db import Database
from mailiverse.store.objects import list_objects_txn, put_object_txn
from mailiverse.store.users import get_user_txn
from tests.support.dnsserver import DnsProcess, Zone, start_dns_process
from tests.support.rspamd import RspamdProcess, start_rspamd
from tests.support.webapi import Api, ApiClient, make_api, signed_in

PASSWORD = "correct horse battery staple"
SPAM = (
    b"From: Winner <lottery@prize.test>\r\nTo: alice@example.org\r\nSubject: you won\r\n"
    b"Message-ID: <won-1@prize.test>\r\nDate: Sun, 06 Dec 2026 10:00:00 +0000\r\n\r\n"
    b"Congratulations, your address was selected in our international lottery draw. Claim your cash prize\r\n"
    b"today by sending your bank details and a small processing fee to our agent before the offer expires.\r\n"
)
HAM = (
    SPAM.split(b"\r\n\r\n")[0].replace(b"won-1", b"lunch-1").replace(b"you won", b"lunch")
    + b"\r\n\r\nShall we have lunch on Thursday at the usual place near the station? I can book a table for\r\n"
    b"twelve thirty, and bring the printed plans for the garden so we can look at them together.\r\n"
)
SHORT = HAM.split(b"\r\n\r\n")[0].replace(b"lunch-1", b"short-1") + b"\r\n\r\nOk.\r\n"


@pytest.fixture(scope="module")
def rspamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RspamdProcess]:
    directory = tmp_path_factory.mktemp("rspamd")
    dns: DnsProcess = start_dns_process(Zone(), directory / "dns")
    try:
        started = start_rspamd(directory / "rspamd", dns.address)
        try:
            yield started
        finally:
            started.stop()
    finally:
        dns.stop()


@pytest.fixture
def filtered_api(database: Database, tmp_path: Path, rspamd: RspamdProcess) -> Iterator[Api]:
    built, delivery = make_api(database, tmp_path, spam_filter=RspamdClient.connect(rspamd.url, reactor))
    try:
        yield built
    finally:
        delivery.stop()


async def _paths(api: Api, name: str) -> list[str]:
    user = await api.database.run(get_user_txn, name)
    assert user is not None
    return [info.path for info in await api.database.run(list_objects_txn, user.id, "Mail/")]


async def _with_spam(api: Api) -> ApiClient:
    client = await signed_in(api, "alice", PASSWORD)
    user = await api.database.run(get_user_txn, "alice")
    assert user is not None
    for path in ("Mail/Spam/5_6", "Mail/Spam_Json/5_6", "Mail/In/7_8", "Mail/In_Json/7_8"):
        await api.database.transact(put_object_txn, user.id, path, f"sealed {path}".encode())
    return client


def _moves(key: str, source: str, target: str) -> dict[str, object]:
    return {
        "moves": [
            {"from": f"{source}/{key}", "to": f"{target}/{key}"},
            {"from": f"{source}_Json/{key}", "to": f"{target}_Json/{key}"},
        ]
    }


@pytest_twisted.ensureDeferred
async def test_a_message_moves_between_spam_and_inbox_with_its_bytes(api: Api) -> None:
    """Both objects renamed, ciphertext unchanged, version up by one; and back again."""
    client = await _with_spam(api)
    reply = await client.call("POST", "/api/move", json_body=_moves("5_6", "Mail/Spam", "Mail/In"))
    assert (reply.status, reply.json()) == (200, {"moved": 2})
    assert await _paths(api, "alice") == ["Mail/In/5_6", "Mail/In/7_8", "Mail/In_Json/5_6", "Mail/In_Json/7_8"]
    moved = await client.call("GET", "/api/store/Mail/In_Json/5_6")
    assert moved.body == b"sealed Mail/Spam_Json/5_6" and moved.header("ETag") == '"2"'
    back = await client.call("POST", "/api/move", json_body=_moves("7_8", "Mail/In", "Mail/Spam"))
    assert back.status == 200
    assert await _paths(api, "alice") == ["Mail/In/5_6", "Mail/In_Json/5_6", "Mail/Spam/7_8", "Mail/Spam_Json/7_8"]


@pytest.mark.parametrize(
    ("moves", "status", "error"),
    [
        ([{"from": "Mail/Spam/5_6", "to": "Mail/Sent/5_6"}], 400, "invalid_path"),  # not between In and Spam
        ([{"from": "Mail/Spam/5_6", "to": "Mail/In/9_9"}], 400, "invalid_path"),  # another key
        ([{"from": "Mail/Spam/5_6", "to": "Mail/In_Json/5_6"}], 400, "invalid_path"),  # original to twin
        ([{"from": "Cache/x", "to": "Mail/In/x"}], 400, "invalid_path"),  # a client object into Mail/
        ([{"from": "Mail/Spam/../In/5_6", "to": "Mail/In/5_6"}], 400, "invalid_path"),
        ([{"from": "Mail/Spam/4_4", "to": "Mail/In/4_4"}], 404, "not_found"),  # no such message
        ([{"from": "Mail/Spam/5_6", "to": "Mail/In/5_6"}, {"from": "Mail/Spam/5_6", "to": "Mail/In/5_6"}], 409, None),
        ([], 400, "invalid_request"),
        ([{"from": "Mail/Spam/5_6"}], 400, "invalid_request"),
        ([{"from": 1, "to": "Mail/In/5_6"}], 400, "invalid_request"),
        ([{"from": "Mail/Spam/5_6", "to": "Mail/In/5_6"}] * 201, 400, "invalid_request"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_a_move_that_is_not_allowed_moves_nothing(
    api: Api, moves: list[dict[str, object]], status: int, error: str | None
) -> None:
    client = await _with_spam(api)
    before = await _paths(api, "alice")
    reply = await client.call("POST", "/api/move", json_body={"moves": moves})
    assert reply.status == status, reply.body
    if error is not None:
        assert reply.json()["error"] == error
    assert await _paths(api, "alice") == before


@pytest_twisted.ensureDeferred
async def test_a_move_onto_an_existing_message_is_a_conflict_and_moves_nothing(api: Api) -> None:
    client = await _with_spam(api)
    user = await api.database.run(get_user_txn, "alice")
    assert user is not None
    await api.database.transact(put_object_txn, user.id, "Mail/In_Json/5_6", b"already here")
    before = await _paths(api, "alice")
    reply = await client.call("POST", "/api/move", json_body=_moves("5_6", "Mail/Spam", "Mail/In"))
    assert (reply.status, reply.json()["error"]) == (409, "conflict")
    assert await _paths(api, "alice") == before


@pytest_twisted.ensureDeferred
async def test_moves_need_a_session_and_csrf_and_touch_only_ones_own_store(api: Api) -> None:
    alice = await _with_spam(api)
    assert (await api.client().call("POST", "/api/move", json_body=_moves("5_6", "Mail/Spam", "Mail/In"))).status == 401
    no_csrf = await alice.call(
        "POST", "/api/move", json_body=_moves("5_6", "Mail/Spam", "Mail/In"), auth="cookie", csrf=False
    )
    assert no_csrf.status == 403
    bob = await signed_in(api, "bob", PASSWORD, 1)
    assert (await bob.call("POST", "/api/move", json_body=_moves("5_6", "Mail/Spam", "Mail/In"))).status == 404
    assert "Mail/Spam/5_6" in await _paths(api, "alice")


@pytest_twisted.ensureDeferred
async def test_without_a_spam_filter_learning_answers_503(api: Api) -> None:
    client = await signed_in(api, "alice", PASSWORD)
    reply = await client.call("POST", "/api/learn/spam", data=SPAM, headers={"Content-Type": "message/rfc822"})
    assert (reply.status, reply.json()["error"]) == (503, "no_spam_filter")


@pytest_twisted.ensureDeferred
async def test_learning_reaches_rspamd_once_per_message(filtered_api: Api, rspamd: RspamdProcess) -> None:
    """spam, then ham: rspamd's learned count goes up by one each; the same message again is "already learned"."""
    client = await signed_in(filtered_api, "alice", PASSWORD)
    before = rspamd.learned()
    # One rspamd serves both databases' runs, and it knows a message by its words: each run's differ.
    tag = f"Reference {filtered_api.database.dialect_name}.\r\n".encode()
    spam = SPAM.replace(b"won-1", f"won-{filtered_api.database.dialect_name}".encode()) + tag
    reply = await client.call("POST", "/api/learn/spam", data=spam, headers={"Content-Type": "message/rfc822"})
    assert (reply.status, reply.json()) == (200, {"learned": True})
    assert rspamd.learned() == before + 1
    again = await client.call("POST", "/api/learn/spam", data=spam, headers={"Content-Type": "message/rfc822"})
    assert (again.status, again.json()) == (200, {"learned": False, "reason": "already learned"})
    ham = HAM.replace(b"lunch-1", f"lunch-{filtered_api.database.dialect_name}".encode()) + tag
    reply = await client.call("POST", "/api/learn/ham", data=ham, headers={"Content-Type": "message/rfc822"})
    assert (reply.status, reply.json()) == (200, {"learned": True})
    assert rspamd.learned() == before + 2
    short = SHORT.replace(b"short-1", f"short-{filtered_api.database.dialect_name}".encode())
    reply = await client.call("POST", "/api/learn/ham", data=short, headers={"Content-Type": "message/rfc822"})
    assert (reply.status, reply.json()) == (200, {"learned": False, "reason": "too little text to learn from"})
    assert rspamd.learned() == before + 2


@pytest.mark.parametrize(
    ("path", "content_type", "body", "status", "error"),
    [
        ("/api/learn/eggs", "message/rfc822", SPAM, 404, "not_found"),
        ("/api/learn/spam", "text/plain", SPAM, 415, "unsupported_media_type"),
        ("/api/learn/spam", "application/json", b"{}", 415, "unsupported_media_type"),
        ("/api/learn/spam", "message/rfc822", b"  \r\n", 400, "invalid_request"),
        ("/api/learn/spam", "message/rfc822", b"x" * (1024 * 1024 + 1), 413, "body_too_large"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_learning_refuses_what_is_not_a_message(
    filtered_api: Api, rspamd: RspamdProcess, path: str, content_type: str, body: bytes, status: int, error: str
) -> None:
    client = await signed_in(filtered_api, "alice", PASSWORD)
    before = rspamd.learned()
    reply = await client.call("POST", path, data=body, headers={"Content-Type": content_type})
    assert (reply.status, reply.json()["error"]) == (status, error)
    assert rspamd.learned() == before


@pytest_twisted.ensureDeferred
async def test_learning_needs_a_session(filtered_api: Api) -> None:
    reply = await filtered_api.client().call(
        "POST", "/api/learn/spam", data=SPAM, headers={"Content-Type": "message/rfc822"}
    )
    assert reply.status == 401


@pytest_twisted.ensureDeferred
async def test_an_unreachable_filter_is_a_502_that_names_nothing_of_the_message(
    database: Database, tmp_path: Path
) -> None:
    from tests.support.harness import free_port

    built, delivery = make_api(
        database, tmp_path, spam_filter=RspamdClient.connect(f"http://127.0.0.1:{free_port()}", reactor)
    )
    try:
        client = await signed_in(built, "alice", PASSWORD)
        reply = await client.call("POST", "/api/learn/ham", data=HAM, headers={"Content-Type": "message/rfc822"})
        assert (reply.status, reply.json()["error"]) == (502, "spam_filter_failed")
        assert b"lunch" not in reply.body
    finally:
        delivery.stop()
