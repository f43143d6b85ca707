"""A software WebAuthn authenticator for tests: makes credentials and assertions as a browser hands them over.

What ``navigator.credentials.create()``/``get()`` give a page, written out by hand from the specification (an
ES256 key on P-256, ``none`` attestation, CBOR by cbor2), so the server's checks are exercised by bytes it did
not make itself. ``origin`` and ``rp_id`` are what a browser would put in; tests change them to play an attacker.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

_UP, _UV, _AT = 0x01, 0x04, 0x40


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _cose_es256(key: ec.EllipticCurvePrivateKey) -> bytes:
    numbers = key.public_key().public_numbers()
    return cbor2.dumps({1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")})


@dataclass
class SoftAuthenticator:
    """One authenticator holding credentials by id; its signature counter goes up by one per assertion."""

    credentials: dict[bytes, ec.EllipticCurvePrivateKey] = field(default_factory=dict)
    counter: int = 0

    def _client_data(self, kind: str, challenge: str, origin: str) -> bytes:
        return json.dumps({"type": kind, "challenge": challenge, "origin": origin, "crossOrigin": False}).encode()

    def create(self, options: dict[str, Any], origin: str, rp_id: str | None = None) -> dict[str, Any]:
        """The RegistrationResponseJSON of a new credential for ``options`` (PublicKeyCredentialCreationOptions)."""
        rp = rp_id if rp_id is not None else options["rp"]["id"]
        key = ec.generate_private_key(ec.SECP256R1())
        credential_id = os.urandom(32)
        self.credentials[credential_id] = key
        attested = bytes(16) + struct.pack(">H", len(credential_id)) + credential_id + _cose_es256(key)
        auth_data = hashlib.sha256(rp.encode()).digest() + bytes([_UP | _UV | _AT]) + struct.pack(">I", 0) + attested
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        client_data = self._client_data("webauthn.create", options["challenge"], origin)
        return {
            "id": b64url(credential_id),
            "rawId": b64url(credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(client_data),
                "attestationObject": b64url(attestation),
                "transports": ["internal"],
            },
            "clientExtensionResults": {},
        }

    def get(
        self,
        options: dict[str, Any],
        origin: str,
        rp_id: str | None = None,
        credential_id: bytes | None = None,
        *,
        counter: int | None = None,
    ) -> dict[str, Any]:
        """The AuthenticationResponseJSON of an assertion for ``options`` (PublicKeyCredentialRequestOptions)."""
        rp = rp_id if rp_id is not None else options["rpId"]
        if credential_id is None:
            allowed = [unb64url(c["id"]) for c in options.get("allowCredentials", [])]
            credential_id = next(c for c in allowed if c in self.credentials)
        key = self.credentials[credential_id]
        if counter is None:
            self.counter += 1
            counter = self.counter
        auth_data = hashlib.sha256(rp.encode()).digest() + bytes([_UP | _UV]) + struct.pack(">I", counter)
        client_data = self._client_data("webauthn.get", options["challenge"], origin)
        signature = key.sign(auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256()))
        return {
            "id": b64url(credential_id),
            "rawId": b64url(credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(client_data),
                "authenticatorData": b64url(auth_data),
                "signature": b64url(signature),
                "userHandle": None,
            },
            "clientExtensionResults": {},
        }


async def enrol_passkey(client: Any, origin: str, name: str = "Laptop") -> tuple[SoftAuthenticator, list[str]]:
    """Register a passkey for the logged-in ``client`` (a ``tests.support.webapi.ApiClient``) on a new software
    authenticator; returns it and the recovery codes the first passkey comes with."""
    authenticator = SoftAuthenticator()
    start = await client.call("POST", "/api/account/passkeys/register/start", json_body={})
    assert start.status == 200, start.body
    credential = authenticator.create(start.json()["options"], origin)
    finish = await client.call(
        "POST",
        "/api/account/passkeys/register/finish",
        json_body={"handle": start.json()["handle"], "credential": credential, "name": name},
    )
    assert finish.status == 201, finish.body
    return authenticator, list(finish.json().get("recovery_codes", []))
