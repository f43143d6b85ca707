"""Sessions through the API: bearer and cookie, CSRF, origin checks, logout, expiry, password change, deletion."""

from __future__ import annotations

import base64
from typing import Any

import pytest_twisted
from sqlalchemy import update

from mailiverse.auth import ClientLogin
from mailiverse.store.legacy import add_credentials_txn, get_credentials_txn
from mailiverse.store.schema import legacy_store_credentials
from mailiverse.store.users import get_user_txn
from tests.support.webapi import Api, ApiClient, b64, password_keys

PASSWORD = "first password here"
NEW_PASSWORD = "second password here"


async def _alice(api: Api) -> ApiClient:
    client = api.client()
    assert (await client.signup("alice", PASSWORD)).status == 201
    assert (await client.login("alice", PASSWORD)).status == 200
    return client


@pytest_twisted.ensureDeferred
async def test_no_session_is_401(api: Api) -> None:
    """Without a token or cookie the account route answers 401 unauthenticated."""
    reply = await api.client().call("GET", "/api/account", auth=None)
    assert reply.status == 401
    assert reply.json()["error"] == "unauthenticated"
    assert reply.header("WWW-Authenticate") is not None


@pytest_twisted.ensureDeferred
async def test_cookie_write_without_csrf_is_403(api: Api) -> None:
    """A cookie-authenticated write without X-CSRF-Token is refused; with it, it succeeds."""
    client = await _alice(api)
    reads = await client.call("GET", "/api/account", auth="cookie", csrf=False)
    assert reads.status == 200
    missing = await client.call("PUT", "/api/store/Cache/a", data=b"x", auth="cookie", csrf=False)
    assert (missing.status, missing.json()["error"]) == (403, "csrf_failed")
    wrong = await client.call(
        "PUT", "/api/store/Cache/a", data=b"x", auth="cookie", csrf=False, headers={"X-CSRF-Token": "A" * 43}
    )
    assert wrong.status == 403
    good = await client.call("PUT", "/api/store/Cache/a", data=b"x", auth="cookie")
    assert good.status == 201


@pytest_twisted.ensureDeferred
async def test_bearer_write_needs_no_csrf(api: Api) -> None:
    """A bearer-authenticated write is CSRF-immune: no CSRF header needed."""
    client = await _alice(api)
    reply = await client.call("PUT", "/api/store/Cache/a", data=b"x", auth="bearer")
    assert reply.status == 201


@pytest_twisted.ensureDeferred
async def test_cross_site_cookie_write_refused(api: Api) -> None:
    """Even with the CSRF token, a cookie write marked cross-site or from another origin is refused."""
    client = await _alice(api)
    cross = await client.call(
        "PUT", "/api/store/Cache/a", data=b"x", auth="cookie", headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert cross.status == 403
    other = await client.call(
        "PUT", "/api/store/Cache/a", data=b"x", auth="cookie", headers={"Origin": "https://evil.example"}
    )
    assert other.status == 403
    same = await client.call(
        "PUT",
        "/api/store/Cache/a",
        data=b"x",
        auth="cookie",
        headers={"Origin": "https://mail.example.org", "Sec-Fetch-Site": "same-origin"},
    )
    assert same.status == 201


@pytest_twisted.ensureDeferred
async def test_cross_site_login_refused(api: Api) -> None:
    """Login start from a cross-site page is refused (login CSRF)."""
    reply = await api.client().call(
        "POST", "/api/login/start", json_body={"user": "alice"}, auth=None, headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert (reply.status, reply.json()["error"]) == (403, "csrf_failed")


@pytest_twisted.ensureDeferred
async def test_logout_revokes(api: Api) -> None:
    """After logout the token no longer works and the cookie is cleared."""
    client = await _alice(api)
    out = await client.call("POST", "/api/logout")
    assert out.status == 200
    assert "Max-Age=0" in (out.header("Set-Cookie") or "")
    after = await client.call("GET", "/api/account")
    assert after.status == 401


@pytest_twisted.ensureDeferred
async def test_expired_session_refused(api: Api) -> None:
    """A session idle longer than the idle timeout is refused, and one past the absolute timeout too."""
    client = await _alice(api)
    api.time.advance(api.sessions.idle_timeout + 1)
    assert (await client.call("GET", "/api/account")).status == 401
    assert (await client.login("alice", PASSWORD)).status == 200
    logged_in = api.time.now
    step = api.sessions.idle_timeout / 2
    while api.time.now + step < logged_in + api.sessions.absolute_timeout:
        api.time.advance(step)
        assert (await client.call("GET", "/api/account")).status == 200
    api.time.now = logged_in + api.sessions.absolute_timeout
    assert (await client.call("GET", "/api/account")).status == 401


@pytest_twisted.ensureDeferred
async def test_session_route_returns_csrf(api: Api) -> None:
    """GET /api/session gives the browser its CSRF token again after a reload."""
    client = await _alice(api)
    reply = await client.call("GET", "/api/session", auth="cookie")
    assert reply.status == 200
    assert reply.json()["csrf"] == client.csrf
    assert reply.json()["user"] == "alice"


@pytest_twisted.ensureDeferred
async def test_account_returns_key_block(api: Api) -> None:
    """The account route returns the key block exactly as signed up, which the CryptoKey opens."""
    from mailiverse.compat.blocks import decrypt_key_block

    client = await _alice(api)
    account = (await client.call("GET", "/api/account")).json()
    environment = decrypt_key_block(password_keys(PASSWORD)[0], base64.b64decode(account["key_block"]))
    assert set(environment) == {"RSA-PublicKey", "RSA-PrivateKey"}
    assert environment["RSA-PublicKey"] == account["public_key"]
    assert account["addresses"] == ["alice@example.org", "alice@mail.example.net"]


async def _password_body(client: ApiClient, password: str, new_password: str) -> tuple[dict[str, object], ClientLogin]:
    from mailiverse.compat.blocks import decrypt_key_block, encrypt_key_block

    account = (await client.call("GET", "/api/account")).json()
    environment = decrypt_key_block(password_keys(password)[0], base64.b64decode(account["key_block"]))
    proof, login = await client.proof("alice", password)
    new_body = client.signup_body("alice", new_password)
    new_body["key_block"] = b64(encrypt_key_block(password_keys(new_password)[0], environment))
    body = {
        "proof": proof,
        "salt": new_body["salt"],
        "verifier": new_body["verifier"],
        "group": new_body["group"],
        "key_block": new_body["key_block"],
        "key_block_version": account["key_block_version"],
    }
    return body, login


@pytest_twisted.ensureDeferred
async def test_password_change(api: Api) -> None:
    """A proven password change swaps verifier and key block, ends other sessions, and only the new password works."""
    client = await _alice(api)
    other = api.client()
    assert (await other.login("alice", PASSWORD)).status == 200
    body, login = await _password_body(client, PASSWORD, NEW_PASSWORD)
    reply = await client.call("POST", "/api/account/password", json_body=body)
    assert reply.status == 200, reply.body
    login.verify_session(base64.b64decode(reply.json()["HAMK"]))
    client.adopt(reply)
    assert (await client.call("GET", "/api/account")).status == 200
    assert (await other.call("GET", "/api/account")).status == 401
    assert (await api.client().login("alice", PASSWORD)).status == 401
    assert (await api.client().login("alice", NEW_PASSWORD)).status == 200


@pytest_twisted.ensureDeferred
async def test_password_change_revokes_legacy_store_keys(api: Api) -> None:
    """A password change revokes every MV store credential of the account (an account once legacy may hold some)."""
    client = await _alice(api)
    user = await api.database.run(get_user_txn, "alice")
    assert user is not None

    def legacy_keys_txn(conn: Any) -> None:
        add_credentials_txn(conn, "bound", b"sealed", "alice", now_ms=1)
        add_credentials_txn(conn, "unbound", b"sealed", "alice", now_ms=1)
        add_credentials_txn(conn, "bobs", b"sealed", "bob", now_ms=1)
        conn.execute(
            update(legacy_store_credentials).where(legacy_store_credentials.c.key_id == "bound").values(user_id=user.id)
        )

    await api.database.transact(legacy_keys_txn)
    body, _login = await _password_body(client, PASSWORD, NEW_PASSWORD)
    reply = await client.call("POST", "/api/account/password", json_body=body)
    assert reply.status == 200, reply.body
    assert await api.database.run(get_credentials_txn, "bound") is None
    assert await api.database.run(get_credentials_txn, "unbound") is None
    assert await api.database.run(get_credentials_txn, "bobs") is not None


@pytest_twisted.ensureDeferred
async def test_password_change_needs_correct_proof(api: Api) -> None:
    """A password change with a proof from a wrong password is refused and changes nothing."""
    client = await _alice(api)
    body, _login = await _password_body(client, PASSWORD, NEW_PASSWORD)
    wrong, _ = await client.proof("alice", "guess")
    body["proof"] = wrong
    reply = await client.call("POST", "/api/account/password", json_body=body)
    assert (reply.status, reply.json()["error"]) == (401, "auth_failed")
    assert (await api.client().login("alice", PASSWORD)).status == 200


@pytest_twisted.ensureDeferred
async def test_password_change_with_other_users_proof_refused(open_api: Api) -> None:
    """Bob's valid proof cannot change Alice's password."""
    alice = await _alice(open_api)
    bob = open_api.client()
    assert (await bob.signup("bob", NEW_PASSWORD, 1)).status == 201
    body, _login = await _password_body(alice, PASSWORD, "third password")
    body["proof"], _ = await bob.proof("bob", NEW_PASSWORD)
    reply = await alice.call("POST", "/api/account/password", json_body=body)
    assert reply.status == 401


@pytest_twisted.ensureDeferred
async def test_delete_account(api: Api) -> None:
    """Deleting with a fresh proof removes the account, its objects and sessions."""
    client = await _alice(api)
    assert (await client.call("PUT", "/api/store/Cache/x", data=b"1")).status == 201
    wrong, _ = await client.proof("alice", "guess")
    refused = await client.call("DELETE", "/api/account", json_body={"proof": wrong})
    assert refused.status == 401
    proof, login = await client.proof("alice", PASSWORD)
    reply = await client.call("DELETE", "/api/account", json_body={"proof": proof})
    assert reply.status == 200, reply.body
    login.verify_session(base64.b64decode(reply.json()["HAMK"]))
    assert (await client.call("GET", "/api/account")).status == 401
    assert await api.database.run(get_user_txn, "alice") is None
