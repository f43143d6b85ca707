"""The legacy Mailiverse SRP variant (docs/formats.md §6): group, hashes, both state machines, session stream.

This is the original's modified Jordan Zimmerman "SRP-6a" with SHA-256: signed hashes
of two's-complement byte arrays, the byte-interleaving ``combine``, an unreduced B and
evidence computed over S.  It interoperates with the original clients only; new
accounts use the modern group in ``mailiverse.auth``.  Every intermediate value is kept
on the session objects so the published transcripts can be compared field by field.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

#: The hard-coded ``SRPFactory.DEFAULT_CONSTANTS`` modulus: a 257-bit safe prime.
N = int("115b8b692e0e045692cf280b436735c77a5a9e8a9e7ed56c965f87db5b2a2ece3", 16)
N_BITS = 257
G = 2
#: Protocol version carried in the hello and sign-up packets (``ConstantsVersion.LOGIN``).
LOGIN_VERSION = "2.0"
#: Bytes drawn per random value: ``(bitlen + bitlen - 1) / 8`` in the original.
RANDOM_BYTES = (N_BITS + N_BITS - 1) // 8
#: Longest base64 field accepted for a public key or an evidence value.  Honest
#: values are at most 65 bytes (B is about 513 bits); this leaves ample room.
MAX_FIELD_CHARS = 512

Rng = Callable[[int], bytes]


class SrpError(Exception):
    """Authentication failed; the message is deliberately the same for every cause."""

    def __init__(self, message: str = "authentication failed") -> None:
        super().__init__(message)


def tc(i: int) -> bytes:
    """Java ``BigInteger.toByteArray()``: shortest big-endian two's complement, never empty."""
    bit_length = i.bit_length() if i >= 0 else (~i).bit_length()
    return i.to_bytes(bit_length // 8 + 1, "big", signed=True)


def sint(b: bytes) -> int:
    """Java ``new BigInteger(byte[])``: big-endian signed; an empty array is an error."""
    if not b:
        raise ValueError("zero-length integer")
    return int.from_bytes(b, "big", signed=True)


def H(i: int) -> int:
    """SHA-256 of ``tc(i)``, read back as a signed integer."""
    return sint(hashlib.sha256(tc(i)).digest())


def combine(a: int, b: int) -> int:
    """The library's interleaving of ``tc(a)`` and ``tc(b)`` (the "even" rule), as a signed int."""
    left, right = tc(a), tc(b)
    out = bytearray()
    i = j = 0
    while i < len(left) and j < len(right):
        alpha = left[i]
        i += 1
        out.append(alpha)
        out.append(right[j])
        j += 1
        # The javadoc says "odd"; the shipped code takes an extra byte after an even one.
        if alpha & 1 == 0 and j < len(right):
            out.append(right[j])
            j += 1
    out += left[i:]
    out += right[j:]
    return sint(bytes(out))


#: The multiplier ``k = H(combine(N, g))``; positive for this group.
K_MULTIPLIER = H(combine(N, G))


def random_value(rng: Rng | None = None) -> int:
    """A value in [2, N-1] drawn as the original does: 64 random bytes, signed, mod (N-2), +2."""
    draw = rng if rng is not None else os.urandom
    raw = draw(RANDOM_BYTES)
    if len(raw) != RANDOM_BYTES:
        raise ValueError("random source returned the wrong number of bytes")
    return sint(raw) % (N - 2) + 2


def private_x(verification_key: bytes, salt: int) -> int:
    """``x = H(combine(sint(VerificationKey), s))``; the VerificationKey is read as signed."""
    if not verification_key:
        raise ValueError("empty verification key")
    return H(combine(sint(verification_key), salt))


def make_verifier(verification_key: bytes, salt: int | None = None, rng: Rng | None = None) -> tuple[int, int]:
    """Return ``(s, v)`` for a VerificationKey: a fresh salt unless one is given, and ``v = g^x mod N``."""
    s = random_value(rng) if salt is None else salt
    if s <= 0:
        raise ValueError("salt must be positive")
    return s, pow(G, private_x(verification_key, s), N)


def encode_int(i: int) -> str:
    """The wire form of an SRP integer: b64 of ``tc(i)``."""
    return base64.b64encode(tc(i)).decode("ascii")


def decode_int(text: Any) -> int:
    """Parse a b64 ``tc()`` field strictly; any problem is an :class:`SrpError`."""
    if not isinstance(text, str) or not text or len(text) > MAX_FIELD_CHARS:
        raise SrpError()
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise SrpError() from None
    if not raw or base64.b64encode(raw).decode("ascii") != text:
        raise SrpError()
    return sint(raw)


def _field(packet: Any, name: str) -> Any:
    if not isinstance(packet, dict) or name not in packet:
        raise SrpError()
    return packet[name]


def _same(received: int, expected: int) -> bool:
    """Constant-time equality of two evidence values, as BigIntegers are compared."""
    return hmac.compare_digest(tc(received), tc(expected))


def session_key(S: int) -> bytes:
    """``K = SHA256(tc(S))``: the AES-256 key of the post-authentication stream."""
    return hashlib.sha256(tc(S)).digest()


def client_evidence(A: int, B: int, S: int) -> int:
    """``M1 = H(combine(combine(A, B), S))``."""
    return H(combine(combine(A, B), S))


def server_evidence(A: int, M1: int, S: int) -> int:
    """``M2 = H(combine(combine(A, M1), S))``."""
    return H(combine(combine(A, M1), S))


class LegacySrpClient:
    """The client side: hello, then A, then M1, then the check of M2.

    Call :meth:`hello`, :meth:`receive_salt`, :meth:`receive_server_public_key` and
    :meth:`receive_server_evidence` in order; each takes and returns packet JSON dicts.
    """

    def __init__(
        self,
        user: str,
        verification_key: bytes,
        *,
        a: int | None = None,
        rng: Rng | None = None,
        version: str = LOGIN_VERSION,
    ) -> None:
        self.user = user
        self.version = version
        self._verification_key = bytes(verification_key)
        self.a = random_value(rng) if a is None else a
        self.A = pow(G, self.a, N)
        self.k = K_MULTIPLIER
        self.s: int | None = None
        self.server_version: str | None = None
        self.x: int | None = None
        self.v: int | None = None
        self.B: int | None = None
        self.u: int | None = None
        self.exponent: int | None = None
        self.S: int | None = None
        self.M1: int | None = None
        self.M2: int | None = None
        self.K: bytes | None = None
        self.authenticated = False
        self._step = 0
        self._failed = False

    def _advance(self, expected: int) -> None:
        if self._failed or self._step != expected:
            self._failed = True
            raise SrpError()
        self._step += 1

    def hello(self) -> dict[str, Any]:
        """Packet 1: ``{"user", "version"}``."""
        self._advance(0)
        return {"user": self.user, "version": self.version}

    def receive_salt(self, packet: dict[str, Any]) -> dict[str, Any]:
        """Take packet 2 (salt), compute x and v, and return packet 3 (A)."""
        self._advance(1)
        try:
            s = decode_int(_field(packet, "salt"))
            version = _field(packet, "version")
            if s <= 0 or not isinstance(version, str):
                raise SrpError()
            self.s, self.server_version = s, version
            self.x = private_x(self._verification_key, s)
            self.v = pow(G, self.x, N)
        except Exception:  # noqa: BLE001 - one generic error whatever failed
            self._failed = True
            raise SrpError() from None
        return {"publicKey": encode_int(self.A)}

    def receive_server_public_key(self, packet: dict[str, Any]) -> dict[str, Any]:
        """Take packet 4 (B), compute u, S, M1 and K, and return packet 5 (M1)."""
        self._advance(2)
        try:
            B = decode_int(_field(packet, "publicKey"))
            # B = k*v + (g^b mod N) is never reduced, so an honest B lies in (0, (k+1)*N).
            if B <= 0 or B % N == 0 or B >= (self.k + 1) * N:
                raise SrpError()
            u = H(combine(self.A, B))
            if u % N == 0:
                raise SrpError()
            assert self.x is not None
            exponent = self.a + u * self.x
            S = pow(B - self.k * pow(G, self.x, N), exponent, N)
            self.B, self.u, self.exponent, self.S = B, u, exponent, S
            self.M1 = client_evidence(self.A, B, S)
            self.K = session_key(S)
        except Exception:  # noqa: BLE001 - one generic error whatever failed
            self._failed = True
            raise SrpError() from None
        return {"evidence": encode_int(self.M1)}

    def receive_server_evidence(self, packet: dict[str, Any]) -> bytes:
        """Take packet 6 (M2), verify it in constant time, and return the session key K."""
        self._advance(3)
        try:
            received = decode_int(_field(packet, "evidence"))
            assert self.S is not None and self.M1 is not None and self.K is not None
            expected = server_evidence(self.A, self.M1, self.S)
            if not _same(received, expected):
                raise SrpError()
        except Exception:  # noqa: BLE001 - one generic error whatever failed
            self._failed = True
            raise SrpError() from None
        self.M2 = expected
        self.authenticated = True
        return self.K


class LegacySrpServer:
    """The server side for one user whose salt and verifier are known.

    Call :meth:`receive_hello`, :meth:`receive_client_public_key` and
    :meth:`receive_client_evidence` in order.  M2 and K are only set once M1 has been
    verified, so nothing derived from S leaves the server after a wrong password.
    """

    def __init__(
        self,
        user: str,
        salt: int,
        verifier: int,
        *,
        b: int | None = None,
        rng: Rng | None = None,
        version: str = LOGIN_VERSION,
    ) -> None:
        if salt <= 0 or not 0 < verifier < N:
            raise ValueError("stored salt or verifier out of range")
        self.user = user
        self.s = salt
        self.v = verifier
        self.version = version
        self.k = K_MULTIPLIER
        self.b = random_value(rng) if b is None else b
        self.B = self.k * verifier + pow(G, self.b, N)
        self.A: int | None = None
        self.u: int | None = None
        self.S: int | None = None
        self.M1: int | None = None
        self.M2: int | None = None
        self.K: bytes | None = None
        self._expected_m1: int | None = None
        self._session_key: bytes | None = None
        self._server_m2: int | None = None
        self.authenticated = False
        self._step = 0
        self._failed = False

    def _advance(self, expected: int) -> None:
        if self._failed or self._step != expected:
            self._failed = True
            raise SrpError()
        self._step += 1

    def receive_hello(self, packet: dict[str, Any]) -> dict[str, Any]:
        """Take packet 1 for this user and return packet 2 (salt and stored version)."""
        self._advance(0)
        user = _field(packet, "user") if isinstance(packet, dict) else None
        if not isinstance(user, str) or not hmac.compare_digest(user.encode("utf-8"), self.user.encode("utf-8")):
            self._failed = True
            raise SrpError()
        return {"salt": encode_int(self.s), "version": self.version}

    def receive_client_public_key(self, packet: dict[str, Any]) -> dict[str, Any]:
        """Take packet 3 (A), reject A outside (0, N), and return packet 4 (B, unreduced)."""
        self._advance(1)
        try:
            A = decode_int(_field(packet, "publicKey"))
            # The original only rejects A mod N == 0; honest clients always send g^a mod N.
            if A <= 0 or A >= N or A % N == 0:
                raise SrpError()
            u = H(combine(A, self.B))
            if u % N == 0:
                raise SrpError()
            self.A, self.u = A, u
        except Exception:  # noqa: BLE001 - one generic error whatever failed
            self._failed = True
            raise SrpError() from None
        return {"publicKey": encode_int(self.B)}

    def receive_client_evidence(self, packet: dict[str, Any]) -> dict[str, Any]:
        """Take packet 5 (M1), verify it in constant time, and return packet 6 (M2)."""
        self._advance(2)
        try:
            received = decode_int(_field(packet, "evidence"))
            assert self.A is not None and self.u is not None
            S = pow(self.A * pow(self.v, self.u, N), self.b, N)
            expected = client_evidence(self.A, self.B, S)
            if not _same(received, expected):
                raise SrpError()
        except Exception:  # noqa: BLE001 - one generic error whatever failed
            self._failed = True
            raise SrpError() from None
        self.S = S
        self.M1 = expected
        self.M2 = server_evidence(self.A, expected, S)
        self.K = session_key(S)
        self.authenticated = True
        return {"evidence": encode_int(self.M2)}


class SessionCipher:
    """The post-authentication stream: each line is b64(AES-CBC-256-EmbedIV(K, utf8(text))).

    ``ivs`` fixes the IVs of successive encryptions (for reproducing vectors); when it
    is exhausted, encryption fails rather than silently reusing or inventing an IV.
    """

    def __init__(
        self,
        key: bytes,
        ivs: Iterable[bytes] | None = None,
        *,
        max_line: int | None = None,
    ) -> None:
        if len(key) != 32:
            raise ValueError("session key must be 32 bytes")
        self._key = bytes(key)
        self._ivs: Iterator[bytes] | None = iter(ivs) if ivs is not None else None
        self._max_line = max_line

    def encrypt_line(self, text: str) -> str:
        """Encrypt one message; returns the b64 line without its newline."""
        from mailiverse.crypto.aes import encrypt_embediv

        iv: bytes | None = None
        if self._ivs is not None:
            iv = next(self._ivs, None)
            if iv is None:
                raise ValueError("fixed IV sequence exhausted")
        blob = encrypt_embediv(self._key, text.encode("utf-8"), iv=iv)
        return base64.b64encode(blob).decode("ascii")

    def decrypt_line(self, line: str) -> str:
        """Decrypt one b64 line (a trailing newline is allowed); any failure is one generic error."""
        from mailiverse.crypto.aes import decrypt_embediv

        body = line.removesuffix("\n")
        body = body.removesuffix("\r")
        try:
            if not body or (self._max_line is not None and len(body) > self._max_line):
                raise ValueError
            raw = base64.b64decode(body.encode("ascii"), validate=True)
            if base64.b64encode(raw).decode("ascii") != body:
                raise ValueError
            return decrypt_embediv(self._key, raw).decode("utf-8")
        except Exception:  # noqa: BLE001 - one generic error whatever failed
            raise SrpError("session message rejected") from None
