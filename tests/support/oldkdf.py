"""Accounts made the old way: the sign-up a client from before Argon2id sent (fixed-salt PBKDF2 keys, no ``kdf``).

The upgrade tests (tests/client, tests/e2e, tests/browser) make such an account, then check that the next
login of today's clients moves it to Argon2id and that its mail stays readable.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from mailiverse.auth.srp6a import SRP_GROUP, create_verifier
from mailiverse.client import Transport
from mailiverse.compat.blocks import encrypt_key_block
from mailiverse.crypto.keys import generate_private_key, private_key_der, public_key_der
from mailiverse.crypto.pbkdf import crypto_key, verification_key


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def pbkdf2_signup_body(name: str, password: str, invite: str | None = None) -> dict[str, Any]:
    """The ``POST /api/signup`` body of a pre-Argon2id client: keys by the formats.md §5 rule, no ``kdf``."""
    private = generate_private_key(2048)
    salt, verifier = create_verifier(name, verification_key(password))
    environment = {"RSA-PublicKey": _b64(public_key_der(private)), "RSA-PrivateKey": _b64(private_key_der(private))}
    body: dict[str, Any] = {
        "user": name,
        "salt": _b64(salt),
        "verifier": _b64(verifier),
        "group": SRP_GROUP,
        "public_key": _b64(public_key_der(private)),
        "key_block": _b64(encrypt_key_block(crypto_key(password), environment)),
        "format": "v2",
    }
    if invite is not None:
        body["invite"] = invite
    return body


def post_json(transport: Transport, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """One JSON request without a session; the status and the answer."""
    response = transport.request("POST", path, json.dumps(body).encode(), {"Content-Type": "application/json"})
    answer: dict[str, Any] = json.loads(response.body or b"{}")
    return response.status, answer


def pbkdf2_signup(transport: Transport, name: str, password: str, invite: str | None = None) -> None:
    """Sign ``name`` up the old way over ``transport``."""
    status, answer = post_json(transport, "/api/signup", pbkdf2_signup_body(name, password, invite))
    assert status == 201, answer


def login_kdf(transport: Transport, name: str) -> dict[str, Any]:
    """The KDF description login start gives for ``name`` (anyone may ask)."""
    status, answer = post_json(transport, "/api/login/start", {"user": name})
    assert status == 200, answer
    described: dict[str, Any] = answer["kdf"]
    return described
