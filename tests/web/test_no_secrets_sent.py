"""The password, the derived keys and the private key never appear in any request body
of sign-up, login and password change."""

from __future__ import annotations

import base64

import pytest_twisted

from mailiverse.crypto.keys import private_key_der
from tests.support.webapi import Api, password_keys, rsa_key

PASSWORD = "hunter2 but longer and unique"


@pytest_twisted.ensureDeferred
async def test_secrets_never_sent(api: Api) -> None:
    """Capture every body a sign-up, two logins (one wrong) and a data fetch send:
    none holds a secret in any encoding."""
    client = api.client()
    assert (await client.signup("alice", PASSWORD)).status == 201
    assert (await client.login("alice", "wrong " + PASSWORD)).status == 401
    assert (await client.login("alice", PASSWORD)).status == 200
    assert (await client.call("PUT", "/api/store/Cache/k", data=b"client ciphertext")).status == 201
    crypto, verification = password_keys(PASSWORD)
    private = private_key_der(rsa_key(0))
    secrets = [PASSWORD.encode(), crypto, verification, private, private[8:72]]
    forms = set()
    for secret in secrets:
        forms |= {secret, base64.b64encode(secret), base64.urlsafe_b64encode(secret), secret.hex().encode()}
    bodies = api.sent_bodies
    assert len(bodies) >= 5
    for body in bodies:
        for form in forms:
            assert form not in body
