"""Sign-up rules through the API: closed by default, invites are one-time, inputs are checked, attempts are limited."""

from __future__ import annotations

import pytest
import pytest_twisted

from mailiverse.crypto.keys import generate_private_key, public_key_der
from mailiverse.store import accounts as repo
from tests.support.webapi import Api, b64

PASSWORD = "a long enough password"


async def _invite(api: Api, expires_ms: int | None = None) -> str:
    code, _record = await api.database.transact(repo.create_invite_txn, expires_ms=expires_ms)
    return code


@pytest_twisted.ensureDeferred
async def test_second_signup_needs_invite(api: Api) -> None:
    """After the first account, sign-up without an invite is refused with 403 signup_closed."""
    client = api.client()
    status = await client.call("GET", "/api/signup", auth=None)
    assert status.json()["open"] is True
    assert (await client.signup("alice", PASSWORD)).status == 201
    assert (await client.call("GET", "/api/signup", auth=None)).json()["open"] is False
    refused = await client.signup("bob", PASSWORD, key_index=1)
    assert refused.status == 403
    assert refused.json()["error"] == "signup_closed"


@pytest_twisted.ensureDeferred
async def test_invite_works_once(api: Api) -> None:
    """A valid invite admits one sign-up; the same code is refused the second time."""
    client = api.client()
    assert (await client.signup("alice", PASSWORD)).status == 201
    code = await _invite(api)
    assert (await client.signup("bob", PASSWORD, 1, invite=code)).status == 201
    again = await client.signup("carol", PASSWORD, 2, invite=code)
    assert again.status == 403
    invites = await api.database.run(repo.list_invites_txn)
    assert [i.used_by for i in invites] == ["bob"]


@pytest_twisted.ensureDeferred
async def test_expired_invite_refused(api: Api) -> None:
    """An invite past its expiry admits nobody."""
    client = api.client()
    assert (await client.signup("alice", PASSWORD)).status == 201
    code = await _invite(api, expires_ms=1)
    reply = await client.signup("bob", PASSWORD, 1, invite=code)
    assert reply.status == 403


@pytest_twisted.ensureDeferred
async def test_open_signup_admits_anyone(open_api: Api) -> None:
    """With --open-signup every well-formed sign-up is admitted."""
    client = open_api.client()
    assert (await client.signup("alice", PASSWORD)).status == 201
    assert (await client.signup("bob", PASSWORD, 1)).status == 201


@pytest_twisted.ensureDeferred
async def test_taken_name_case_insensitive(open_api: Api) -> None:
    """User names are case-insensitive: ALICE is taken once alice exists (409)."""
    client = open_api.client()
    assert (await client.signup("alice", PASSWORD)).status == 201
    reply = await client.signup("ALICE", PASSWORD, 1)
    assert reply.status == 409
    assert reply.json()["error"] == "username_taken"


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("user", "postmaster", "invalid_username"),
        ("user", "a..b", "invalid_username"),
        ("group", "rfc5054-1024-sha1", "invalid_srp"),
        ("salt", b64(b"short"), "invalid_srp"),
        ("verifier", b64(b"\x00" * 256), "invalid_srp"),
        ("verifier", b64(b"\xff" * 256), "invalid_srp"),
        ("public_key", b64(b"not a key"), "invalid_public_key"),
        ("key_block", b64(b"\x01" * 17), "invalid_key_block"),
        ("key_block", b64(b"\x01" * (64 * 1024 + 16)), "invalid_key_block"),
        ("format", "v1", "invalid_format"),
        ("salt", "***not base64***", "invalid_request"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_signup_rejects_bad_fields(open_api: Api, field: str, value: str, code: str) -> None:
    """Each malformed sign-up field is refused with its stable error code and nothing is created."""
    client = open_api.client()
    body = client.signup_body("alice", PASSWORD)
    body[field] = value
    reply = await client.call("POST", "/api/signup", json_body=body, auth=None)
    assert reply.status == 400, reply.body
    assert reply.json()["error"] == code
    assert await open_api.accounts.signup_open() is True
    assert await open_api.database.run(repo.count_users_txn) == 0


@pytest_twisted.ensureDeferred
async def test_signup_rejects_small_rsa_key(open_api: Api) -> None:
    """A 1024-bit public key is refused (2048 to 4096 bits only)."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    client = open_api.client()
    body = client.signup_body("alice", PASSWORD)
    body["public_key"] = b64(public_key_der(rsa.generate_private_key(65537, 1024)))
    reply = await client.call("POST", "/api/signup", json_body=body, auth=None)
    assert (reply.status, reply.json()["error"]) == (400, "invalid_public_key")


@pytest_twisted.ensureDeferred
async def test_signup_accepts_4096_bit_key(open_api: Api) -> None:
    """A 4096-bit key is at the upper bound and accepted."""
    client = open_api.client()
    body = client.signup_body("alice", PASSWORD)
    body["public_key"] = b64(public_key_der(generate_private_key(4096)))
    reply = await client.call("POST", "/api/signup", json_body=body, auth=None)
    assert reply.status == 201, reply.body


@pytest_twisted.ensureDeferred
async def test_signups_rate_limited_per_address(open_api: Api) -> None:
    """Past the per-address sign-up budget, sign-up answers 429 with Retry-After."""
    client = open_api.client()
    budget = open_api.accounts.policy.per_address.attempts
    body = client.signup_body("alice", PASSWORD)
    body["user"] = "root"
    for _ in range(budget):
        assert (await client.call("POST", "/api/signup", json_body=body, auth=None)).status == 400
    reply = await client.signup("alice", PASSWORD)
    assert reply.status == 429
    assert reply.header("Retry-After") is not None


@pytest_twisted.ensureDeferred
async def test_closed_signup_does_not_reveal_taken_names(api: Api) -> None:
    """With sign-up closed, a taken name and a free name get the same 403: the policy is checked first."""
    client = api.client()
    assert (await client.signup("alice", PASSWORD)).status == 201
    taken = await client.signup("alice", PASSWORD, key_index=1)
    free = await client.signup("zed", PASSWORD, key_index=1)
    assert (taken.status, taken.json()) == (free.status, free.json())
    assert taken.status == 403
    assert taken.json()["error"] == "signup_closed"
    bad_invite = await client.signup("alice", PASSWORD, key_index=1, invite="A" * 26)
    assert bad_invite.status == 403


@pytest_twisted.ensureDeferred
async def test_taken_name_with_invite_keeps_the_invite(api: Api) -> None:
    """With a valid invite, a taken name is 409 username_taken, and the invite is not used up."""
    client = api.client()
    assert (await client.signup("alice", PASSWORD)).status == 201
    code = await _invite(api)
    taken = await client.signup("Alice", PASSWORD, 1, invite=code)
    assert taken.status == 409
    assert taken.json()["error"] == "username_taken"
    assert (await client.signup("bob", PASSWORD, 1, invite=code)).status == 201
