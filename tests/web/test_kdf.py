"""The password KDF description through the API (docs/auth.md, "The password KDF"): kept at sign-up and
password change, answered at login start, a stable decoy for names that cannot log in, bad ones refused."""

from __future__ import annotations

import base64
from typing import Any

import pytest_twisted

from mailiverse.auth import ClientLogin, create_verifier
from mailiverse.compat.blocks import decrypt_key_block, encrypt_key_block
from mailiverse.crypto.kdf import DEFAULT_ITERATIONS, DEFAULT_MEMORY_KIB, KdfParams, derive_keys, new_kdf, parse_kdf
from mailiverse.crypto.keys import private_key_der, public_key_der
from mailiverse.store.users import get_user_txn, set_disabled_txn
from tests.support.webapi import Api, ApiClient, Reply, b64, rsa_key

PASSWORD = "correct horse battery staple"
NEW_PASSWORD = "a new and different passphrase"


def _cheap(params: KdfParams) -> KdfParams:
    """The same salt with the least work the server accepts (64 MiB, one pass), to keep the tests quick."""
    return KdfParams(params.kdf, params.salt, 64 * 1024, 1, 1)


def _argon2_body(name: str, password: str, params: KdfParams) -> dict[str, Any]:
    """A sign-up body of today's clients: keys from ``params``, the description sent along."""
    crypto, verification = derive_keys(password, params)
    private = rsa_key(0)
    salt, verifier = create_verifier(name, verification)
    environment = {"RSA-PublicKey": b64(public_key_der(private)), "RSA-PrivateKey": b64(private_key_der(private))}
    return {
        "user": name,
        "salt": b64(salt),
        "verifier": b64(verifier),
        "group": "rfc5054-2048-sha256",
        "public_key": b64(public_key_der(private)),
        "key_block": b64(encrypt_key_block(crypto, environment)),
        "format": "v2",
        "kdf": params.to_json(),
    }


async def _start(client: ApiClient, name: str) -> dict[str, Any]:
    reply = await client.call("POST", "/api/login/start", json_body={"user": name}, auth=None)
    assert reply.status == 200, reply.body
    answer: dict[str, Any] = reply.json()
    return answer


async def _login(client: ApiClient, name: str, password: str) -> Reply:
    """Both round trips with the keys of the description login start names."""
    start = await _start(client, name)
    _crypto, verification = derive_keys(password, parse_kdf(start["kdf"]))
    login = ClientLogin(name, verification)
    proof = login.process_challenge(base64.b64decode(start["salt"]), base64.b64decode(start["B"]))
    body = {"handle": start["handle"], "A": b64(login.A), "M": b64(proof)}
    reply = await client.call("POST", "/api/login/finish", json_body=body, auth=None)
    if reply.status == 200:
        login.verify_session(base64.b64decode(reply.json()["HAMK"]))
        client.adopt(reply)
    return reply


@pytest_twisted.ensureDeferred
async def test_signup_description_is_kept_and_answered_at_login_start(api: Api) -> None:
    """The description sent at sign-up is stored as given and handed back by login start and the account route."""
    client = api.client()
    params = _cheap(new_kdf())
    reply = await client.call("POST", "/api/signup", json_body=_argon2_body("alice", PASSWORD, params), auth=None)
    assert reply.status == 201, reply.body
    assert (await _start(client, "Alice"))["kdf"] == params.to_json()
    assert (await _login(client, "alice", PASSWORD)).status == 200
    account = (await client.call("GET", "/api/account")).json()
    assert account["kdf"] == params.to_json()
    crypto, _verification = derive_keys(PASSWORD, params)
    assert set(decrypt_key_block(crypto, base64.b64decode(account["key_block"]))) == {"RSA-PublicKey", "RSA-PrivateKey"}
    user = await api.database.run(get_user_txn, "alice")
    assert user is not None and user.kdf == params.canonical()


@pytest_twisted.ensureDeferred
async def test_unknown_name_gets_a_stable_decoy_description(api: Api) -> None:
    """A name without an account gets an Argon2id description of today's parameters, the same every time
    (whatever the case of the name), its own per name, shaped like a real account's."""
    client = api.client()
    real = _cheap(new_kdf())
    await client.call("POST", "/api/signup", json_body=_argon2_body("alice", PASSWORD, real), auth=None)
    first = (await _start(client, "mallory"))["kdf"]
    again = (await _start(client, "Mallory"))["kdf"]
    other = (await _start(client, "trudy"))["kdf"]
    assert first == again
    assert first != other
    assert set(first) == set(real.to_json()) == {"kdf", "salt", "m", "t", "p"}
    decoy = parse_kdf(first)
    assert decoy.is_argon2id and len(decoy.salt) == len(real.salt) == 16
    assert (decoy.memory_kib, decoy.iterations, decoy.parallelism) == (DEFAULT_MEMORY_KIB, DEFAULT_ITERATIONS, 1)
    assert parse_kdf(other).salt != decoy.salt


@pytest_twisted.ensureDeferred
async def test_account_that_cannot_log_in_gets_the_decoy(api: Api) -> None:
    """A disabled account's login start shows a stable decoy, not its stored description."""
    client = api.client()
    real = _cheap(new_kdf())
    await client.call("POST", "/api/signup", json_body=_argon2_body("alice", PASSWORD, real), auth=None)
    user = await api.database.run(get_user_txn, "alice")
    assert user is not None
    await api.database.transact(set_disabled_txn, user.id, True)
    shown = (await _start(client, "alice"))["kdf"]
    assert shown != real.to_json() and shown == (await _start(client, "alice"))["kdf"]
    assert parse_kdf(shown).memory_kib == DEFAULT_MEMORY_KIB


@pytest_twisted.ensureDeferred
async def test_account_made_without_a_description_has_the_original_rule(api: Api) -> None:
    """A sign-up from a client before Argon2id (no ``kdf``) is the fixed-salt PBKDF2 rule, and says so."""
    client = api.client()
    assert (await client.signup("alice", PASSWORD)).status == 201
    assert (await _start(client, "alice"))["kdf"] == {"kdf": "pbkdf2-sha256"}
    assert (await client.login("alice", PASSWORD)).status == 200
    assert (await client.call("GET", "/api/account")).json()["kdf"] == {"kdf": "pbkdf2-sha256"}


@pytest_twisted.ensureDeferred
async def test_bad_descriptions_are_refused_and_create_nothing(api: Api) -> None:
    """A description that is malformed or too weak is a 400 ``invalid_kdf`` naming the field; no account is made."""
    client = api.client()
    good = _argon2_body("alice", PASSWORD, _cheap(new_kdf()))
    for kdf in (
        {**good["kdf"], "m": 1024},
        {**good["kdf"], "t": 0},
        {**good["kdf"], "salt": b64(b"short")},
        {"kdf": "scrypt"},
        "argon2id",
        [],
    ):
        reply = await client.call("POST", "/api/signup", json_body={**good, "kdf": kdf}, auth=None)
        assert reply.status == 400, reply.body
        assert reply.json()["error"] == "invalid_kdf" and reply.json()["message"]
    assert await api.database.run(get_user_txn, "alice") is None
    assert (await client.call("POST", "/api/signup", json_body=good, auth=None)).status == 201


async def _change_body(client: ApiClient, old: KdfParams, new: KdfParams | None, password: str) -> dict[str, Any]:
    """A password-change body: a fresh proof with ``password`` under ``old``, keys of NEW_PASSWORD under ``new``
    (the PBKDF2 rule and no ``kdf`` field when ``new`` is None, as clients before Argon2id send it)."""
    account = (await client.call("GET", "/api/account")).json()
    environment = decrypt_key_block(derive_keys(password, old)[0], base64.b64decode(account["key_block"]))
    start = await _start(client, "alice")
    login = ClientLogin("alice", derive_keys(password, parse_kdf(start["kdf"]))[1])
    m = login.process_challenge(base64.b64decode(start["salt"]), base64.b64decode(start["B"]))
    crypto, verification = derive_keys(NEW_PASSWORD, new if new is not None else parse_kdf({"kdf": "pbkdf2-sha256"}))
    salt, verifier = create_verifier("alice", verification)
    body: dict[str, Any] = {
        "proof": {"handle": start["handle"], "A": b64(login.A), "M": b64(m)},
        "salt": b64(salt),
        "verifier": b64(verifier),
        "group": "rfc5054-2048-sha256",
        "key_block": b64(encrypt_key_block(crypto, environment)),
        "key_block_version": account["key_block_version"],
    }
    if new is not None:
        body["kdf"] = new.to_json()
    return body


@pytest_twisted.ensureDeferred
async def test_password_change_records_the_new_description(api: Api) -> None:
    """A password change stores the description it sends; one without ``kdf`` returns to the PBKDF2 rule;
    a bad one is ``invalid_kdf`` and changes nothing."""
    client = api.client()
    first = _cheap(new_kdf())
    await client.call("POST", "/api/signup", json_body=_argon2_body("alice", PASSWORD, first), auth=None)
    assert (await _login(client, "alice", PASSWORD)).status == 200

    bad = await _change_body(client, first, _cheap(new_kdf()), PASSWORD)
    bad["kdf"] = {**bad["kdf"], "p": 0}
    refused = await client.call("POST", "/api/account/password", json_body=bad)
    assert refused.status == 400 and refused.json()["error"] == "invalid_kdf"
    assert (await _start(client, "alice"))["kdf"] == first.to_json()

    second = _cheap(new_kdf())
    changed = await client.call(
        "POST", "/api/account/password", json_body=await _change_body(client, first, second, PASSWORD)
    )
    assert changed.status == 200, changed.body
    client.adopt(changed)
    assert (await _start(client, "alice"))["kdf"] == second.to_json() != first.to_json()
    assert (await _login(api.client(), "alice", NEW_PASSWORD)).status == 200

    old_style = await _change_body(client, second, None, NEW_PASSWORD)
    back = await client.call("POST", "/api/account/password", json_body=old_style)
    assert back.status == 200, back.body
    assert (await _start(client, "alice"))["kdf"] == {"kdf": "pbkdf2-sha256"}
    assert (await api.client().login("alice", NEW_PASSWORD)).status == 200
