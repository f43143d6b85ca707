"""Passkeys and recovery codes as a second factor on top of SRP, through the API (docs/passkeys.md): registration,
the third round trip, single-use handles, hostile credentials, the login budgets and device tokens."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_twisted
from sqlalchemy import func, select

from mailiverse.auth import ClientLogin
from mailiverse.auth.ratelimit import LOGIN_PER_ACCOUNT
from mailiverse.store.schema import sessions
from mailiverse.store.secondfactor import count_passkeys_txn
from mailiverse.store.users import get_user_txn
from tests.support.softauthn import SoftAuthenticator, b64url
from tests.support.webapi import BASE, Api, ApiClient, Reply, b64, password_keys, signed_in

PASSWORD = "correct horse battery staple"
ORIGIN = BASE  # https://mail.example.org, the appliance's --hostname


@dataclass
class Enrolled:
    """A logged-in account with one passkey on a software authenticator, and its recovery codes."""

    client: ApiClient
    authenticator: SoftAuthenticator
    codes: list[str]
    passkey_id: str


async def _enrol(api: Api, name: str = "alice", index: int = 0) -> Enrolled:
    client = await signed_in(api, name, PASSWORD, index)
    authenticator = SoftAuthenticator()
    start = await client.call("POST", "/api/account/passkeys/register/start", json_body={})
    assert start.status == 200, start.body
    options = start.json()["options"]
    credential = authenticator.create(options, ORIGIN)
    finish = await client.call(
        "POST",
        "/api/account/passkeys/register/finish",
        json_body={"handle": start.json()["handle"], "credential": credential, "name": "Laptop"},
    )
    assert finish.status == 201, finish.body
    answer = finish.json()
    return Enrolled(client, authenticator, answer["recovery_codes"], answer["passkey"]["id"])


async def _password_step(client: ApiClient, name: str = "alice", password: str = PASSWORD, **extra: Any) -> Reply:
    """Both SRP round trips; for an account with a second factor, the answer that asks for it."""
    start = await client.call("POST", "/api/login/start", json_body={"user": name, **extra}, auth=None)
    if start.status != 200:
        return start
    login = ClientLogin(name, password_keys(password)[1])
    challenge = start.json()
    answer = login.process_challenge(base64.b64decode(challenge["salt"]), base64.b64decode(challenge["B"]))
    proof = {"handle": challenge["handle"], "A": b64(login.A), "M": b64(answer), **extra}
    reply = await client.call("POST", "/api/login/finish", json_body=proof, auth=None)
    if reply.status == 200:
        login.verify_session(base64.b64decode(reply.json()["HAMK"]))
    return reply


async def _second_step(client: ApiClient, body: dict[str, Any], headers: dict[str, str] | None = None) -> Reply:
    return await client.call("POST", "/api/login/second-factor", json_body=body, auth=None, headers=headers)


async def _session_count(api: Api, name: str) -> int:
    def count_txn(conn: Any) -> int:
        return int(
            conn.execute(select(func.count()).select_from(sessions).where(sessions.c.username == name)).scalar_one()
        )

    return int(await api.database.run(count_txn))


@pytest_twisted.ensureDeferred
async def test_register_a_passkey_then_log_in_with_it(api: Api) -> None:
    """A registered passkey (with 10 recovery codes shown once) is asked for after SRP; its assertion opens the
    session, and the account's view lists the passkey with its last use."""
    enrolled = await _enrol(api)
    assert len(enrolled.codes) == 10 and len(set(enrolled.codes)) == 10
    status = (await enrolled.client.call("GET", "/api/account/second-factor")).json()
    assert status["enabled"] is True and status["rp_id"] == "mail.example.org"
    assert [p["name"] for p in status["passkeys"]] == ["Laptop"] and status["passkeys"][0]["last_used_ms"] is None
    assert status["recovery_codes"]["remaining"] == 10

    client = api.client()
    step = await _password_step(client)
    assert step.status == 200, step.body
    second = step.json()["second_factor"]
    assert second["methods"] == ["passkey", "recovery_code"]
    assert second["options"]["rpId"] == "mail.example.org"
    assert [c["id"] for c in second["options"]["allowCredentials"]] == [enrolled.passkey_id]
    done = await _second_step(
        client, {"handle": second["handle"], "credential": enrolled.authenticator.get(second["options"], ORIGIN)}
    )
    assert done.status == 200, done.body
    assert set(done.json()) == {"user", "token", "csrf", "expires_in", "device"}
    client.adopt(done)
    assert (await client.call("GET", "/api/account")).status == 200
    listed = (await client.call("GET", "/api/account/second-factor")).json()["passkeys"]
    assert listed[0]["last_used_ms"] is not None


@pytest_twisted.ensureDeferred
async def test_password_alone_opens_no_session(api: Api) -> None:
    """SRP passing is not a login for an account with a second factor: HAMK, a handle, and no token, cookie,
    device token or session row."""
    await _enrol(api)
    before = await _session_count(api, "alice")
    reply = await _password_step(api.client())
    assert reply.status == 200
    assert set(reply.json()) == {"user", "HAMK", "second_factor"}
    assert reply.header("Set-Cookie") is None
    assert await _session_count(api, "alice") == before


@pytest_twisted.ensureDeferred
async def test_a_recovery_code_works_once(api: Api) -> None:
    """A recovery code (typed in any case, spaces and hyphens ignored) logs in once; the second time it is refused."""
    enrolled = await _enrol(api)
    code = enrolled.codes[3]
    typed = " " + code.lower().replace("-", " ") + " "
    first = await _password_step(api.client())
    done = await _second_step(api.client(), {"handle": first.json()["second_factor"]["handle"], "recovery_code": typed})
    assert done.status == 200, done.body
    again = await _password_step(api.client())
    refused = await _second_step(
        api.client(), {"handle": again.json()["second_factor"]["handle"], "recovery_code": code}
    )
    assert (refused.status, refused.json()["error"]) == (401, "second_factor_failed")
    status = (await enrolled.client.call("GET", "/api/account/second-factor")).json()
    assert status["recovery_codes"]["remaining"] == 9


@pytest_twisted.ensureDeferred
async def test_handles_are_single_use_and_expire(api: Api) -> None:
    """A handle works once (even replayed with the same good assertion), and not after five minutes."""
    enrolled = await _enrol(api)
    step = (await _password_step(api.client())).json()["second_factor"]
    body = {"handle": step["handle"], "credential": enrolled.authenticator.get(step["options"], ORIGIN)}
    assert (await _second_step(api.client(), body)).status == 200
    replayed = await _second_step(api.client(), body)
    assert (replayed.status, replayed.json()["error"]) == (401, "second_factor_failed")

    late = (await _password_step(api.client())).json()["second_factor"]
    api.time.advance(301)
    answer = enrolled.authenticator.get(late["options"], ORIGIN)
    expired = await _second_step(api.client(), {"handle": late["handle"], "credential": answer})
    assert (expired.status, expired.json()["error"]) == (401, "second_factor_failed")


@pytest.mark.parametrize(
    ("origin", "rp_id"),
    [
        ("https://evil.example", None),
        ("https://mail.example.org:8443", None),
        ("http://mail.example.org", None),
        (ORIGIN, "evil.example"),
        (ORIGIN, "example.org"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_assertions_from_elsewhere_are_refused(api: Api, origin: str, rp_id: str | None) -> None:
    """An assertion made for another origin or RP ID is refused, and its handle is spent: the good one then fails."""
    enrolled = await _enrol(api)
    step = (await _password_step(api.client())).json()["second_factor"]
    forged = enrolled.authenticator.get(step["options"], origin, rp_id)
    refused = await _second_step(api.client(), {"handle": step["handle"], "credential": forged})
    assert (refused.status, refused.json()["error"]) == (401, "second_factor_failed")
    good = enrolled.authenticator.get(step["options"], ORIGIN)
    assert (await _second_step(api.client(), {"handle": step["handle"], "credential": good})).status == 401


def _hostile_credentials(good: dict[str, Any]) -> list[Any]:
    response = good["response"]
    return [
        {},
        {"id": 1, "rawId": 2, "response": [], "type": "public-key"},
        {**good, "type": "password"},
        {**good, "rawId": "!!!not base64!!!"},
        {**good, "rawId": b64url(b"\x00" * 2000), "id": b64url(b"\x00" * 2000)},
        {**good, "response": {**response, "signature": b64url(b"\x30\x02\x01")}},
        {**good, "response": {**response, "authenticatorData": b64url(b"\x01" * 10)}},
        {**good, "response": {**response, "clientDataJSON": b64url(b"\xff\xfe not json")}},
        {**good, "response": {**response, "clientDataJSON": b64url(json.dumps([1, 2]).encode())}},
        {**good, "response": {**response, "clientDataJSON": None}},
        {**good, "response": "a string"},
        "not an object",
        ["a", "list"],
    ]


@pytest_twisted.ensureDeferred
async def test_malformed_credentials_are_refused_cleanly(api: Api) -> None:
    """Malformed or tampered assertions answer 401 second_factor_failed (or 400 for a non-object), never 500."""
    enrolled = await _enrol(api)
    step = (await _password_step(api.client())).json()["second_factor"]
    good = enrolled.authenticator.get(step["options"], ORIGIN)
    for hostile in _hostile_credentials(good):
        api.time.advance(100)  # the login budgets refill: each failed second step is a failed login
        handle = (await _password_step(api.client())).json()["second_factor"]["handle"]
        reply = await _second_step(api.client(), {"handle": handle, "credential": hostile})
        expected = (400, "invalid_request") if not isinstance(hostile, dict) else (401, "second_factor_failed")
        assert (reply.status, reply.json()["error"]) == expected, hostile
    for body in ({"handle": step["handle"]}, {"handle": step["handle"], "credential": good, "recovery_code": "x"}):
        reply = await _second_step(api.client(), body)
        assert (reply.status, reply.json()["error"]) == (400, "invalid_request")
    for handle in ("", "x" * 65, "not-a-handle", 5):
        reply = await _second_step(api.client(), {"handle": handle, "recovery_code": enrolled.codes[0]})
        assert reply.status in (400, 401) and reply.json()["error"] in ("invalid_request", "second_factor_failed")


@pytest_twisted.ensureDeferred
async def test_oversized_and_cross_site_second_steps_are_refused(api: Api) -> None:
    """The second step takes at most 16 KiB of JSON, and never from another site's page."""
    enrolled = await _enrol(api)
    step = (await _password_step(api.client())).json()["second_factor"]
    huge = {"handle": step["handle"], "recovery_code": enrolled.codes[0], "padding": "x" * (17 * 1024)}
    reply = await _second_step(api.client(), huge)
    assert (reply.status, reply.json()["error"]) == (413, "body_too_large")
    body = {"handle": step["handle"], "recovery_code": enrolled.codes[0]}
    cross = await _second_step(api.client(), body, headers={"Sec-Fetch-Site": "cross-site"})
    assert (cross.status, cross.json()["error"]) == (403, "csrf_failed")
    assert (await _second_step(api.client(), body)).status == 200  # neither refusal spent the handle


@pytest_twisted.ensureDeferred
async def test_omitted_second_factor_spends_the_login_budget(api: Api) -> None:
    """Each login that passes SRP and never finishes its second step is a failed login: the account's budget of 10
    runs out as for wrong passwords. Logins that finish it give the failure back."""
    enrolled = await _enrol(api)
    for _ in range(12):  # successful second steps spend nothing
        step = (await _password_step(api.client())).json()["second_factor"]
        answer = enrolled.authenticator.get(step["options"], ORIGIN)
        assert (await _second_step(api.client(), {"handle": step["handle"], "credential": answer})).status == 200
    for _ in range(LOGIN_PER_ACCOUNT.attempts):
        assert (await _password_step(api.client())).status == 200
    throttled = await _password_step(api.client())
    assert (throttled.status, throttled.json()["error"]) == (429, "rate_limited")


@pytest_twisted.ensureDeferred
async def test_failed_second_steps_spend_the_login_budget(api: Api) -> None:
    """Wrong recovery codes count against the account's budget like wrong passwords: 10, then 429."""
    await _enrol(api)
    for attempt in range(LOGIN_PER_ACCOUNT.attempts):
        handle = (await _password_step(api.client())).json()["second_factor"]["handle"]
        wrong = f"{attempt:05d}-ZZZZZ"
        assert (await _second_step(api.client(), {"handle": handle, "recovery_code": wrong})).status == 401
    assert (await _password_step(api.client())).status == 429


@pytest_twisted.ensureDeferred
async def test_device_token_only_after_the_second_factor_and_it_keeps_working(api: Api) -> None:
    """The device token comes with the session of the second step, never with the password step; with it the owner
    logs in (passkey and all) after strangers spent the account's failure budget."""
    enrolled = await _enrol(api)
    owner = api.client()
    step = await _password_step(owner)
    assert "device" not in step.json()
    answer = enrolled.authenticator.get(step.json()["second_factor"]["options"], ORIGIN)
    done = await _second_step(owner, {"handle": step.json()["second_factor"]["handle"], "credential": answer})
    device = done.json()["device"]
    assert any(c.startswith("__Host-mv-device=") for c in done.headers_named("Set-Cookie"))

    for _ in range(LOGIN_PER_ACCOUNT.attempts):  # a stranger guesses passwords
        assert (await _password_step(api.client(), password="wrong guess")).status == 401
    assert (await _password_step(api.client())).status == 429

    again = await _password_step(owner, device=device)
    assert again.status == 200, again.body
    second = again.json()["second_factor"]
    reply = await _second_step(
        owner, {"handle": second["handle"], "credential": enrolled.authenticator.get(second["options"], ORIGIN)}
    )
    assert reply.status == 200 and reply.json()["device"]


@pytest_twisted.ensureDeferred
async def test_request_by_address_offers_recovery_codes_only(api: Api) -> None:
    """An RP ID is never an IP address: a login by address is offered recovery codes alone, and cannot register."""
    enrolled = await _enrol(api)
    client = api.client()
    proof, _login = await client.proof("alice", PASSWORD)
    stub = api.stub
    stub.request.__wrapped__.__self__._cookiejar.clear()
    response = await api.wait(
        stub.request(
            "POST",
            "https://127.0.0.1/api/login/finish",
            headers={"Content-Type": ["application/json"]},
            data=json.dumps(proof).encode(),
        )
    )
    answer = json.loads(await api.wait(stub.content(response)))
    assert answer["second_factor"]["methods"] == ["recovery_code"] and "options" not in answer["second_factor"]
    response = await api.wait(
        stub.request(
            "POST",
            "https://127.0.0.1/api/account/passkeys/register/start",
            headers={"Content-Type": ["application/json"], "Authorization": [f"Bearer {enrolled.client.token}"]},
            data=b"{}",
        )
    )
    assert response.code == 409
    assert json.loads(await api.wait(stub.content(response)))["error"] == "passkeys_unavailable"


@pytest_twisted.ensureDeferred
async def test_registration_refuses_forgeries_and_replays(api: Api) -> None:
    """A registration made for another origin, a replayed handle, or another account's handle registers nothing."""
    alice = await signed_in(api, "alice", PASSWORD, 0)
    bob = await signed_in(api, "bob", PASSWORD, 1)
    authenticator = SoftAuthenticator()

    async def start(client: ApiClient) -> dict[str, Any]:
        reply = await client.call("POST", "/api/account/passkeys/register/start", json_body={})
        assert reply.status == 200
        return dict(reply.json())

    async def finish(client: ApiClient, handle: str, credential: Any) -> Reply:
        body = {"handle": handle, "credential": credential}
        return await client.call("POST", "/api/account/passkeys/register/finish", json_body=body)

    begun = await start(alice)
    forged = await finish(alice, begun["handle"], authenticator.create(begun["options"], "https://evil.example"))
    assert (forged.status, forged.json()["error"]) == (400, "passkey_not_registered")
    good = authenticator.create(begun["options"], ORIGIN)
    assert (await finish(alice, begun["handle"], good)).status == 400  # the handle went with the forgery

    begun = await start(alice)
    stolen = await finish(bob, begun["handle"], authenticator.create(begun["options"], ORIGIN))
    assert (stolen.status, stolen.json()["error"]) == (400, "passkey_not_registered")

    begun = await start(alice)
    made = authenticator.create(begun["options"], ORIGIN)
    assert (await finish(alice, begun["handle"], made)).status == 201
    assert (await finish(alice, begun["handle"], made)).status == 400  # replayed
    name = (await alice.call("POST", "/api/account/passkeys/register/finish", json_body={"handle": "h"})).json()
    assert name["error"] == "invalid_request"
    user = await api.database.run(get_user_txn, "alice")
    assert await api.database.run(count_passkeys_txn, user.id) == 1


@pytest_twisted.ensureDeferred
async def test_registration_handle_is_not_a_login_handle(api: Api) -> None:
    """The handle of a registration cannot stand in for a login's second step."""
    enrolled = await _enrol(api)
    reply = await enrolled.client.call("POST", "/api/account/passkeys/register/start", json_body={})
    refused = await _second_step(api.client(), {"handle": reply.json()["handle"], "recovery_code": enrolled.codes[0]})
    assert (refused.status, refused.json()["error"]) == (401, "second_factor_failed")


@pytest_twisted.ensureDeferred
async def test_removing_the_last_passkey_turns_the_second_factor_off(api: Api) -> None:
    """Removing the last passkey removes the recovery codes too; the password alone logs in again. Another account
    cannot remove it; an unknown or malformed id is 404."""
    enrolled = await _enrol(api)
    bob = await signed_in(api, "bob", PASSWORD, 1)
    path = f"/api/account/passkeys/{enrolled.passkey_id}"
    assert (await bob.call("DELETE", path)).status == 404
    for bad in ("AAAA", "not%20base64", "x" * 2000):
        assert (await enrolled.client.call("DELETE", f"/api/account/passkeys/{bad}")).status == 404
    removed = await enrolled.client.call("DELETE", path)
    assert removed.status == 200 and removed.json() == {"status": "removed", "enabled": False}
    status = (await enrolled.client.call("GET", "/api/account/second-factor")).json()
    assert status["passkeys"] == [] and status["recovery_codes"] == {"remaining": 0, "total": 0, "created_ms": None}
    assert (await api.client().login("alice", PASSWORD)).status == 200


@pytest_twisted.ensureDeferred
async def test_new_recovery_codes_replace_the_old(api: Api) -> None:
    """New recovery codes are shown once and the old ones stop working; an account without a passkey gets none."""
    enrolled = await _enrol(api)
    renewed = await enrolled.client.call("POST", "/api/account/recovery-codes", json_body={})
    fresh = renewed.json()["recovery_codes"]
    assert len(fresh) == 10 and not set(fresh) & set(enrolled.codes)
    handle = (await _password_step(api.client())).json()["second_factor"]["handle"]
    assert (await _second_step(api.client(), {"handle": handle, "recovery_code": enrolled.codes[0]})).status == 401
    handle = (await _password_step(api.client())).json()["second_factor"]["handle"]
    assert (await _second_step(api.client(), {"handle": handle, "recovery_code": fresh[0]})).status == 200
    bob = await signed_in(api, "bob", PASSWORD, 1)
    refused = await bob.call("POST", "/api/account/recovery-codes", json_body={})
    assert (refused.status, refused.json()["error"]) == (409, "no_second_factor")


@pytest_twisted.ensureDeferred
async def test_account_routes_need_a_session_and_csrf(api: Api) -> None:
    """The passkey routes need a live session; with the cookie, writes need the CSRF token."""
    enrolled = await _enrol(api)
    anonymous = api.client()
    assert (await anonymous.call("GET", "/api/account/second-factor", auth=None)).status == 401
    assert (await anonymous.call("POST", "/api/account/recovery-codes", json_body={}, auth=None)).status == 401
    no_csrf = await enrolled.client.call(
        "POST", "/api/account/passkeys/register/start", json_body={}, auth="cookie", csrf=False
    )
    assert (no_csrf.status, no_csrf.json()["error"]) == (403, "csrf_failed")


@pytest_twisted.ensureDeferred
async def test_recovery_codes_are_stored_only_as_keyed_hashes(api: Api) -> None:
    """No recovery code, nor its plain SHA-256, is in the database."""
    import hashlib

    from mailiverse.store.schema import recovery_codes

    enrolled = await _enrol(api)

    def stored_txn(conn: Any) -> list[bytes]:
        return [bytes(row[0]) for row in conn.execute(select(recovery_codes.c.code_hash))]

    stored = await api.database.run(stored_txn)
    assert len(stored) == 10
    for code in enrolled.codes:
        plain = code.replace("-", "").encode()
        assert all(plain not in digest and hashlib.sha256(plain).digest() != digest for digest in stored)


@pytest_twisted.ensureDeferred
async def test_admin_reset_lets_the_password_alone_in(api: Api, tmp_path: Any) -> None:
    """``mailiverse-admin user reset-second-factor NAME`` removes the passkeys and codes (in the database the
    sessions use): the password alone logs in again. An unknown name is one line and exit 1."""
    from twisted.internet.threads import deferToThread

    from mailiverse.admin.cli import main

    await _enrol(api)
    url = api.database.engine.url.render_as_string(hide_password=False)
    base = ["--data-dir", str(tmp_path), "--db", url, "user", "reset-second-factor"]
    assert await deferToThread(main, [*base, "nobody"]) == 1
    assert await deferToThread(main, [*base, "Alice"]) == 0
    user = await api.database.run(get_user_txn, "alice")
    assert await api.database.run(count_passkeys_txn, user.id) == 0
    assert (await api.client().login("alice", PASSWORD)).status == 200
