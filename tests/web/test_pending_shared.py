"""Two front ends over one database: a login, password change or deletion started on one finishes on the other."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import defer

from mailiverse.compat.blocks import decrypt_key_block, encrypt_key_block
from mailiverse.store.db import Database
from mailiverse.store.users import get_user_txn
from tests.support.webapi import Api, ApiClient, Reply, b64, make_api, password_keys

from ..accounts.conftest import shared_url, two_fronts  # noqa: F401 - shared fixtures

PASSWORD = "shared front ends"
NEW_PASSWORD = "changed on the other front end"


@contextlib.contextmanager
def _two_apps(databases: tuple[Database, Database], folder: Path) -> Iterator[tuple[Api, Api]]:
    """Two apps as two processes would run them: each built by ``build_web_app`` over the shared database."""
    built = []
    for index, database in enumerate(databases):
        own = folder / f"front{index}"
        own.mkdir()
        built.append(make_api(database, own, open_signup=True))
    try:
        yield built[0][0], built[1][0]
    finally:
        for _api, delivery in built:
            delivery.stop()


@pytest.fixture
def fronts(two_fronts: tuple[Database, Database], tmp_path: Path) -> Iterator[tuple[Api, Api]]:  # noqa: F811
    """Two apps keeping pending logins in their shared database, on one clock."""
    with _two_apps(two_fronts, tmp_path) as (first, second):
        second.time.now = first.time.now
        yield first, second


@pytest.fixture
def wired(two_fronts: tuple[Database, Database], tmp_path: Path) -> Iterator[tuple[Api, Api]]:  # noqa: F811
    """Two apps built exactly as the appliance builds them (``build_web_app``), each on its own clock."""
    with _two_apps(two_fronts, tmp_path) as apps:
        yield apps


def _twin(client: ApiClient, api: Api) -> ApiClient:
    """A client of ``api`` holding the session ``client`` opened on another front end."""
    twin = api.client()
    twin.token, twin.csrf, twin.cookie, twin.user = client.token, client.csrf, client.cookie, client.user
    return twin


async def _finish(client: ApiClient, proof: dict[str, str]) -> Reply:
    return await client.call("POST", "/api/login/finish", json_body=proof, auth=None)


@pytest_twisted.ensureDeferred
async def test_login_started_on_one_front_end_finishes_on_the_other(fronts: tuple[Api, Api]) -> None:
    """Round trip 1 on A, round trip 2 on B: B checks the proof, returns the right HAMK and opens a session both see."""
    first, second = fronts
    client = first.client()
    assert (await client.signup("alice", PASSWORD)).status == 201
    proof, login = await client.proof("alice", PASSWORD)
    finisher = second.client()
    reply = await _finish(finisher, proof)
    assert reply.status == 200, reply.body
    login.verify_session(base64.b64decode(reply.json()["HAMK"]))
    finisher.adopt(reply)
    assert (await finisher.call("GET", "/api/account")).status == 200
    assert (await _twin(finisher, first).call("GET", "/api/account")).status == 200
    assert (await _finish(first.client(), proof)).status == 401


@pytest_twisted.ensureDeferred
async def test_appliance_wiring_shares_pending_logins(wired: tuple[Api, Api]) -> None:
    """Apps built by build_web_app finish each other's logins, and a replay on the first one fails."""
    first, second = wired
    client = first.client()
    assert (await client.signup("alice", PASSWORD)).status == 201
    proof, login = await client.proof("alice", PASSWORD)
    reply = await _finish(second.client(), proof)
    assert reply.status == 200, reply.body
    login.verify_session(base64.b64decode(reply.json()["HAMK"]))
    replay = await _finish(first.client(), proof)
    assert (replay.status, replay.json()["error"]) == (401, "auth_failed")


@pytest_twisted.ensureDeferred
async def test_racing_finishes_on_two_front_ends_succeed_once(fronts: tuple[Api, Api]) -> None:
    """The same correct proof sent to both front ends at once opens exactly one session."""
    first, second = fronts
    client = first.client()
    assert (await client.signup("alice", PASSWORD)).status == 201
    for _ in range(3):
        proof, _login = await client.proof("alice", PASSWORD)
        replies = await defer.gatherResults(
            [
                defer.Deferred.fromCoroutine(_finish(first.client(), proof)),
                defer.Deferred.fromCoroutine(_finish(second.client(), proof)),
            ]
        )
        assert sorted(reply.status for reply in replies) == [200, 401]


@pytest_twisted.ensureDeferred
async def test_expired_handle_fails_on_the_other_front_end(fronts: tuple[Api, Api]) -> None:
    """A proof sent to B two minutes after A issued the handle is refused with the generic error."""
    first, second = fronts
    client = first.client()
    assert (await client.signup("alice", PASSWORD)).status == 201
    proof, _login = await client.proof("alice", PASSWORD)
    for api in fronts:
        api.time.advance(120)
    reply = await _finish(second.client(), proof)
    assert reply.json() == {"error": "auth_failed", "message": "authentication failed"}
    assert reply.status == 401


@pytest_twisted.ensureDeferred
async def test_unknown_user_fails_like_wrong_password_across_front_ends(fronts: tuple[Api, Api]) -> None:
    """A decoy challenge from A and a wrong password for a real account both end in the same 401 on B."""
    first, second = fronts
    client = first.client()
    assert (await client.signup("alice", PASSWORD)).status == 201
    decoy, _ = await first.client().proof("nobody", PASSWORD)
    wrong, _ = await first.client().proof("alice", "not it")
    replies = [await _finish(second.client(), proof) for proof in (decoy, wrong)]
    assert [(reply.status, reply.body) for reply in replies] == [(replies[1].status, replies[1].body)] * 2
    assert replies[0].status == 401


async def _signed_in(api: Api) -> ApiClient:
    client = api.client()
    assert (await client.signup("alice", PASSWORD)).status == 201
    assert (await client.login("alice", PASSWORD)).status == 200
    return client


@pytest_twisted.ensureDeferred
async def test_password_change_proof_started_on_the_other_front_end(fronts: tuple[Api, Api]) -> None:
    """The fresh proof for a password change is started on A and spent on B; only the new password works after."""
    first, second = fronts
    client = await _signed_in(first)
    account = (await client.call("GET", "/api/account")).json()
    environment = decrypt_key_block(password_keys(PASSWORD)[0], base64.b64decode(account["key_block"]))
    proof, login = await client.proof("alice", PASSWORD)
    new_body = client.signup_body("alice", NEW_PASSWORD)
    body = {
        "proof": proof,
        "salt": new_body["salt"],
        "verifier": new_body["verifier"],
        "group": new_body["group"],
        "key_block": b64(encrypt_key_block(password_keys(NEW_PASSWORD)[0], environment)),
        "key_block_version": account["key_block_version"],
    }
    reply = await _twin(client, second).call("POST", "/api/account/password", json_body=body)
    assert reply.status == 200, reply.body
    login.verify_session(base64.b64decode(reply.json()["HAMK"]))
    again = await _twin(client, second).call("POST", "/api/account/password", json_body=body)
    assert again.status == 401
    assert (await first.client().login("alice", PASSWORD)).status == 401
    assert (await second.client().login("alice", NEW_PASSWORD)).status == 200


@pytest_twisted.ensureDeferred
async def test_delete_proof_started_on_the_other_front_end(fronts: tuple[Api, Api]) -> None:
    """Deletion with a proof started on A succeeds on B; a wrong proof relayed the same way is refused."""
    first, second = fronts
    client = await _signed_in(first)
    on_second = _twin(client, second)
    wrong, _ = await client.proof("alice", "guess")
    refused = await on_second.call("DELETE", "/api/account", json_body={"proof": wrong})
    assert refused.status == 401
    proof, login = await client.proof("alice", PASSWORD)
    reply = await on_second.call("DELETE", "/api/account", json_body={"proof": proof})
    assert reply.status == 200, reply.body
    login.verify_session(base64.b64decode(reply.json()["HAMK"]))
    assert await first.database.run(get_user_txn, "alice") is None
    assert (await client.call("GET", "/api/account")).status == 401
