"""Sign-up and SRP login through the API: the full client crypto, wrong passwords, bad A, enumeration, throttling."""

from __future__ import annotations

import base64

import pytest
import pytest_twisted
import srp._pysrp as srp_reference

from mailiverse.auth import ClientLogin
from mailiverse.crypto.keys import public_key_der
from tests.support.webapi import Api, b64, password_keys, rsa_key

N, _G = srp_reference.get_ng(srp_reference.NG_2048, None, None)
PASSWORD = "correct horse battery staple"


@pytest_twisted.ensureDeferred
async def test_first_signup_then_login_gives_session(api: Api) -> None:
    """The first account of a fresh appliance signs up without an invite and logs in with SRP."""
    client = api.client()
    reply = await client.signup("Alice", PASSWORD)
    assert reply.status == 201, reply.body
    assert reply.json() == {
        "user": "alice",
        "addresses": ["alice@example.org", "alice@mail.example.net"],
        "format": "v2",
    }
    login = await client.login("ALICE", PASSWORD)
    assert login.status == 200, login.body
    assert login.json()["user"] == "alice"
    cookie = login.header("Set-Cookie")
    assert cookie is not None and cookie.startswith("__Host-mv-session=")
    for attribute in ("HttpOnly", "Secure", "SameSite=Strict", "Path=/"):
        assert attribute in cookie
    account = await client.call("GET", "/api/account")
    assert account.status == 200
    assert account.json()["user"] == "alice"
    assert base64.b64decode(account.json()["public_key"]) == public_key_der(rsa_key(0))


@pytest_twisted.ensureDeferred
async def test_wrong_password_fails_without_server_proof(api: Api) -> None:
    """A wrong password gets the one generic 401, no HAMK, no token and no cookie."""
    client = api.client()
    assert (await client.signup("alice", PASSWORD)).status == 201
    reply = await client.login("alice", "not the password")
    assert reply.status == 401
    assert reply.json() == {"error": "auth_failed", "message": "authentication failed"}
    assert reply.header("Set-Cookie") is None
    assert client.token is None


@pytest.mark.parametrize("multiple", [0, 1, 2])
@pytest_twisted.ensureDeferred
async def test_a_congruent_to_zero_is_rejected(api: Api, multiple: int) -> None:
    """A in {0, N, 2N} is refused with the generic error, even with a proof computed for it."""
    client = api.client()
    assert (await client.signup("alice", PASSWORD)).status == 201
    proof, _login = await client.proof("alice", PASSWORD)
    bad_a = (multiple * N).to_bytes(257, "big").lstrip(b"\0") or b"\0"
    proof["A"] = b64(bad_a)
    reply = await client.call("POST", "/api/login/finish", json_body=proof, auth=None)
    assert reply.status == 401
    assert reply.json()["error"] == "auth_failed"
    assert "HAMK" not in reply.json()


@pytest_twisted.ensureDeferred
async def test_handle_is_one_shot(api: Api) -> None:
    """A login handle works once: replaying a correct proof fails."""
    client = api.client()
    assert (await client.signup("alice", PASSWORD)).status == 201
    proof, _login = await client.proof("alice", PASSWORD)
    first = await client.call("POST", "/api/login/finish", json_body=proof, auth=None)
    again = await client.call("POST", "/api/login/finish", json_body=proof, auth=None)
    assert (first.status, again.status) == (200, 401)


@pytest_twisted.ensureDeferred
async def test_unknown_user_gets_same_shape(api: Api) -> None:
    """Login start answers an unknown name exactly like a known one: same keys, sizes, stable salt."""
    client = api.client()
    assert (await client.signup("alice", PASSWORD)).status == 201
    known = await client.call("POST", "/api/login/start", json_body={"user": "alice"}, auth=None)
    unknown = await client.call("POST", "/api/login/start", json_body={"user": "mallory"}, auth=None)
    unknown_again = await client.call("POST", "/api/login/start", json_body={"user": "Mallory"}, auth=None)
    assert known.status == unknown.status == 200
    assert set(known.json()) == set(unknown.json())
    for key in ("salt", "B", "handle"):
        assert len(known.json()[key]) == len(unknown.json()[key])
    assert unknown.json()["salt"] == unknown_again.json()["salt"]
    assert known.header("Content-Type") == unknown.header("Content-Type")
    login = ClientLogin("mallory", password_keys(PASSWORD)[1])
    answer = unknown.json()
    proof = login.process_challenge(base64.b64decode(answer["salt"]), base64.b64decode(answer["B"]))
    finish = await client.call(
        "POST",
        "/api/login/finish",
        json_body={"handle": answer["handle"], "A": b64(login.A), "M": b64(proof)},
        auth=None,
    )
    assert finish.status == 401
    assert finish.json() == {"error": "auth_failed", "message": "authentication failed"}


@pytest_twisted.ensureDeferred
async def test_failed_logins_are_throttled_per_account(api: Api) -> None:
    """After the account's failure budget is spent, login start answers 429 with Retry-After."""
    client = api.client()
    assert (await client.signup("alice", PASSWORD)).status == 201
    budget = api.accounts.throttle.accounts.budget.attempts
    for _ in range(budget):
        assert (await client.login("alice", "wrong")).status == 401
    blocked = await client.call("POST", "/api/login/start", json_body={"user": "alice"}, auth=None)
    assert blocked.status == 429
    assert blocked.json()["error"] == "rate_limited"
    assert int(blocked.header("Retry-After") or "0") >= 1
    api.time.advance(api.accounts.throttle.accounts.budget.period)
    assert (await client.login("alice", PASSWORD)).status == 200


@pytest_twisted.ensureDeferred
async def test_invalid_username_at_login(api: Api) -> None:
    """A name that breaks the rule is refused at once with a stable code."""
    reply = await api.client().call("POST", "/api/login/start", json_body={"user": "../etc"}, auth=None)
    assert reply.status == 400
    assert reply.json()["error"] == "invalid_username"


@pytest_twisted.ensureDeferred
async def test_srp_package_client_logs_in(api: Api) -> None:
    """The PyPI srp package's own client (RFC 5054 mode) logs in against the API: an independent check."""
    client = api.client()
    assert (await client.signup("alice", PASSWORD)).status == 201
    srp_reference.rfc5054_enable()
    try:
        user = srp_reference.User(
            b"alice", password_keys(PASSWORD)[1], hash_alg=srp_reference.SHA256, ng_type=srp_reference.NG_2048
        )
        _name, a_pub = user.start_authentication()
        start = await client.call("POST", "/api/login/start", json_body={"user": "alice"}, auth=None)
        answer = start.json()
        proof = user.process_challenge(base64.b64decode(answer["salt"]), base64.b64decode(answer["B"]))
        finish = await client.call(
            "POST",
            "/api/login/finish",
            json_body={"handle": answer["handle"], "A": b64(a_pub), "M": b64(proof)},
            auth=None,
        )
        assert finish.status == 200, finish.body
        user.verify_session(base64.b64decode(finish.json()["HAMK"]))
        assert user.authenticated()
    finally:
        srp_reference.rfc5054_enable(False)
