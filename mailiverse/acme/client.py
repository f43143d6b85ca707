"""A small ACME v2 client (RFC 8555) on treq: account, order, HTTP-01, finalize, download.

Requests are JWS-signed with an ES256 account key (RFC 7515/7518); the key authorization of a
challenge is ``token + "." + base64url(SHA-256 JWK thumbprint)`` (RFC 7638).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID
from twisted.internet.task import deferLater

from mailiverse.acme.http01 import IChallengeStore
from mailiverse.httpbody import BodyTooLarge, read_bounded

MAX_RESPONSE = 1024 * 1024
JOSE_JSON = b"application/jose+json"


class AcmeError(Exception):
    """The CA refused or failed; the message carries the CA's problem type and detail."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def load_account_key(pem: bytes) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise AcmeError("the ACME account key must be an EC P-256 key")
    return key


def new_account_key_pem() -> bytes:
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def jwk(key: ec.EllipticCurvePrivateKey) -> dict[str, str]:
    numbers = key.public_key().public_numbers()
    return {
        "crv": "P-256",
        "kty": "EC",
        "x": b64url(numbers.x.to_bytes(32, "big")),
        "y": b64url(numbers.y.to_bytes(32, "big")),
    }


def thumbprint(key: ec.EllipticCurvePrivateKey) -> str:
    canonical = json.dumps(jwk(key), sort_keys=True, separators=(",", ":")).encode("ascii")
    return b64url(hashlib.sha256(canonical).digest())


def csr_der(names: Sequence[str], key_pem: bytes) -> bytes:
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    builder = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
    )
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


class AcmeClient:
    """Talks to one ACME directory with one account key through a treq ``HTTPClient``."""

    def __init__(
        self,
        directory_url: str,
        account_key_pem: bytes,
        http: Any,
        reactor: Any,
        *,
        email: str | None = None,
        poll_interval: float = 1.0,
        max_polls: int = 120,
    ) -> None:
        self._directory_url = directory_url
        self._key = load_account_key(account_key_pem)
        self._http = http
        self._reactor = reactor
        self._email = email
        self._poll_interval = poll_interval
        self._max_polls = max_polls
        self._directory: dict[str, Any] | None = None
        self._nonce: str | None = None
        self._kid: str | None = None

    # -- transport -----------------------------------------------------------------------------

    async def _body(self, response: Any) -> bytes:
        try:
            return await read_bounded(response, MAX_RESPONSE)
        except BodyTooLarge:
            raise AcmeError("the ACME server's response is too large") from None

    def _remember_nonce(self, response: Any) -> None:
        nonce = response.headers.getRawHeaders(b"replay-nonce")
        if nonce:
            self._nonce = nonce[0].decode("ascii")

    async def directory(self) -> dict[str, Any]:
        if self._directory is None:
            response = await self._http.get(self._directory_url)
            body = await self._body(response)
            if response.code != 200:
                raise AcmeError(f"the ACME directory {self._directory_url} answered {response.code}")
            self._directory = json.loads(body)
        return self._directory

    async def _new_nonce(self) -> str:
        url = (await self.directory())["newNonce"]
        response = await self._http.head(url)
        await self._body(response)
        self._remember_nonce(response)
        if self._nonce is None:
            raise AcmeError("the ACME server gave no nonce")
        return self._nonce

    def _sign(self, url: str, payload: Any, nonce: str) -> bytes:
        protected: dict[str, Any] = {"alg": "ES256", "nonce": nonce, "url": url}
        if self._kid is None:
            protected["jwk"] = jwk(self._key)
        else:
            protected["kid"] = self._kid
        protected_b64 = b64url(json.dumps(protected).encode("utf-8"))
        payload_b64 = "" if payload is None else b64url(json.dumps(payload).encode("utf-8"))
        der = self._key.sign(f"{protected_b64}.{payload_b64}".encode("ascii"), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        signature = b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
        return json.dumps({"protected": protected_b64, "payload": payload_b64, "signature": signature}).encode("ascii")

    async def _post(self, url: str, payload: Any) -> tuple[Any, bytes]:
        """POST a signed request (``payload=None`` is POST-as-GET); one retry on ``badNonce``."""
        for attempt in (1, 2):
            nonce = self._nonce or await self._new_nonce()
            self._nonce = None
            response = await self._http.post(
                url, data=self._sign(url, payload, nonce), headers={b"content-type": [JOSE_JSON]}
            )
            body = await self._body(response)
            self._remember_nonce(response)
            if response.code < 400:
                return response, body
            try:
                problem = json.loads(body)
            except ValueError:
                problem = {}
            if attempt == 1 and problem.get("type") == "urn:ietf:params:acme:error:badNonce":
                continue
            raise AcmeError(f"ACME {problem.get('type', response.code)}: {str(problem.get('detail', ''))[:300]}")
        raise AcmeError("the ACME server kept refusing nonces")

    # -- protocol ------------------------------------------------------------------------------

    async def register(self) -> str:
        """Create (or find) the account of this key; returns its URL."""
        if self._kid is None:
            payload: dict[str, Any] = {"termsOfServiceAgreed": True}
            if self._email:
                payload["contact"] = [f"mailto:{self._email}"]
            response, _ = await self._post((await self.directory())["newAccount"], payload)
            location = response.headers.getRawHeaders(b"location")
            if not location:
                raise AcmeError("the ACME server gave no account URL")
            self._kid = location[0].decode("ascii")
        return self._kid

    async def _poll(self, url: str, pending: tuple[str, ...]) -> dict[str, Any]:
        for _ in range(self._max_polls):
            _, body = await self._post(url, None)
            state = json.loads(body)
            if state.get("status") not in pending:
                return dict(state)
            await deferLater(self._reactor, self._poll_interval, lambda: None)
        raise AcmeError(f"the ACME server did not finish {url} in time")

    async def issue(self, names: Sequence[str], challenges: IChallengeStore, key_pem: bytes) -> bytes:
        """Order a certificate for ``names``, answer HTTP-01 through ``challenges``; return the PEM chain."""
        await self.register()
        directory = await self.directory()
        response, body = await self._post(
            directory["newOrder"], {"identifiers": [{"type": "dns", "value": n} for n in names]}
        )
        order = json.loads(body)
        order_url = response.headers.getRawHeaders(b"location")[0].decode("ascii")
        tokens: list[str] = []
        try:
            for authz_url in order["authorizations"]:
                _, body = await self._post(authz_url, None)
                authz = json.loads(body)
                if authz.get("status") == "valid":
                    continue
                http01 = [c for c in authz.get("challenges", []) if c.get("type") == "http-01"]
                if not http01:
                    raise AcmeError(
                        f"the ACME server offers no http-01 challenge for {authz.get('identifier', {}).get('value')}"
                    )
                token = http01[0]["token"]
                await challenges.place(token, f"{token}.{thumbprint(self._key)}")
                tokens.append(token)
                await self._post(http01[0]["url"], {})
                result = await self._poll(authz_url, ("pending", "processing"))
                if result.get("status") != "valid":
                    errors = [c.get("error", {}).get("detail", "") for c in result.get("challenges", [])]
                    raise AcmeError(
                        f"validation of {result.get('identifier', {}).get('value')} failed: "
                        f"{'; '.join(e for e in errors if e)[:300]}"
                    )
        finally:
            for token in tokens:
                await challenges.withdraw(token)
        order = await self._poll(order_url, ("pending",))
        if order.get("status") != "ready":
            raise AcmeError(f"the order is {order.get('status')}, not ready")
        await self._post(order["finalize"], {"csr": b64url(csr_der(names, key_pem))})
        order = await self._poll(order_url, ("ready", "processing"))
        if order.get("status") != "valid" or "certificate" not in order:
            raise AcmeError(f"the order ended {order.get('status')}")
        _, chain = await self._post(order["certificate"], None)
        x509.load_pem_x509_certificates(chain)
        return chain
