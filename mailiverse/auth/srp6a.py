"""SRP-6a login for modern accounts: verifier creation, the server's challenge and check, a client.

Group and hash: the 2048-bit group of RFC 5054 appendix A (``srp.NG_2048``) with SHA-256.
The formulas are those of the ``srp`` package in its RFC 5054 mode, so that package is an
independent reference implementation (the tests log in with it against this server and the
other way round)::

    PAD(x) = x big-endian, left-padded with zeros to len(N) = 256 bytes
    I      = the canonical account name, ASCII;  p = the 32-byte VerificationKey (docs/formats.md §5)
    k      = H(N | PAD(g))
    x      = H(s | H(I | ":" | p));  v = g^x mod N
    B      = (k*v + g^b) mod N;      A = g^a mod N
    u      = H(PAD(A) | PAD(B))
    S      = (A * v^u)^b mod N  (server)  =  (B - k*g^x)^(a + u*x) mod N  (client)
    K      = H(S)
    M      = H((H(N) xor H(PAD(g))) | H(I) | s | A | B | K)
    HAMK   = H(A | M | K)

(A, B and S inside M, HAMK and K are minimal big-endian bytes; salts are used as given.)

The arithmetic is done here rather than through ``srp.Verifier``/``srp.User`` because those
read process-wide flags (``rfc5054_enable``) at call time and compare the client proof with
``==``; this module needs fixed formulas and a constant-time comparison. The group itself
comes from the ``srp`` package.

Unknown user names get a decoy salt and verifier derived from the server secret, so the
challenge for a name that has no account looks like, and costs the same as, a real one.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass

import srp._pysrp as _srp_reference

from mailiverse.auth.keys import subkey
from mailiverse.auth.modexp import powmod
from mailiverse.auth.usernames import canonical_username

#: The name of the SRP parameter set, stored with each verifier so another group can be added later.
SRP_GROUP = "rfc5054-2048-sha256"

_N, _G = _srp_reference.get_ng(_srp_reference.NG_2048, None, None)
#: Length of N, and of every padded value on the wire (B, verifiers), in bytes.
GROUP_BYTES = (_N.bit_length() + 7) // 8
#: Length of a new salt, in bytes.
SALT_BYTES = 16
#: Length of the VerificationKey that serves as the SRP password.
VERIFICATION_KEY_BYTES = 32
#: Length of a proof (M or HAMK): one SHA-256 digest.
PROOF_BYTES = 32
#: Longest salt accepted from storage or from the server (a bound on input, not a format).
MAX_SALT_BYTES = 64
#: Bits in the secret ephemeral exponents a and b (RFC 5054 §2.5.3 asks for at least 256).
_EPHEMERAL_BYTES = 32


def _h(*parts: bytes) -> bytes:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return digest.digest()


def _pad(value: int) -> bytes:
    return value.to_bytes(GROUP_BYTES, "big")


def _minimal(value: int) -> bytes:
    return value.to_bytes((value.bit_length() + 7) // 8, "big")


def _int(data: bytes) -> int:
    return int.from_bytes(data, "big")


_K = _int(_h(_minimal(_N), _pad(_G)))
_HN_XOR_HG = bytes(a ^ b for a, b in zip(_h(_minimal(_N)), _h(_pad(_G)), strict=True))


class AuthFailed(Exception):
    """Login failed. Deliberately says nothing about why (wrong proof, bad A, expired, unknown user)."""

    def __init__(self) -> None:
        super().__init__("authentication failed")


def _private_key(username: str, salt: bytes, verification_key: bytes) -> int:
    inner = _h(username.encode("ascii"), b":", verification_key)
    return _int(_h(salt, inner))


def _proof(username: str, salt: bytes, a_pub: int, b_pub: int, key: bytes) -> bytes:
    return _h(
        _HN_XOR_HG,
        _h(username.encode("ascii")),
        salt,
        _minimal(a_pub),
        _minimal(b_pub),
        key,
    )


def _server_proof(a_pub: int, client_proof: bytes, key: bytes) -> bytes:
    return _h(_minimal(a_pub), client_proof, key)


def _check_key(verification_key: bytes) -> None:
    if not isinstance(verification_key, bytes) or len(verification_key) != VERIFICATION_KEY_BYTES:
        raise ValueError(f"the VerificationKey must be exactly {VERIFICATION_KEY_BYTES} bytes")


def _verifier_for(username: str, salt: bytes, verification_key: bytes) -> bytes:
    return _pad(powmod(_G, _private_key(username, salt, verification_key), _N))


def create_verifier(username: str, verification_key: bytes) -> tuple[bytes, bytes]:
    """Return ``(salt, verifier)`` for a new account: a fresh random salt and v = g^x, padded to 256 bytes.

    ``username`` is canonicalized first; ``verification_key`` is the client's 32-byte
    VerificationKey. Used by the client at sign-up (and by tests); the server only stores the result.
    """
    name = canonical_username(username)
    _check_key(verification_key)
    salt = secrets.token_bytes(SALT_BYTES)
    return salt, _verifier_for(name, salt, verification_key)


def decoy_credentials(server_secret: bytes, username: str) -> tuple[bytes, bytes]:
    """Return a stable fake ``(salt, verifier)`` for a name that has no account.

    The salt is HMAC(server secret, name), so asking twice gives the same salt, as it would
    for a real account; the verifier is computed exactly as a real one, from a key nobody knows.
    """
    name = canonical_username(username)
    label = name.encode("ascii")
    salt = hmac.new(subkey(server_secret, "srp decoy salt"), label, hashlib.sha256).digest()[:SALT_BYTES]
    fake_key = hmac.new(subkey(server_secret, "srp decoy key"), label, hashlib.sha256).digest()
    return salt, _verifier_for(name, salt, fake_key)


class LoginChallenge:
    """The server's half of one login attempt, kept between the two HTTP round trips.

    Holds the secret exponent b; ``verify`` may be called once. Create it with
    ``start_login`` or ``begin_login``, never directly.
    """

    def __init__(self, username: str, salt: bytes, verifier: bytes, *, genuine: bool = True) -> None:
        self.username = canonical_username(username)
        if not isinstance(salt, bytes) or not 1 <= len(salt) <= MAX_SALT_BYTES:
            raise ValueError(f"a stored SRP salt must be 1 to {MAX_SALT_BYTES} bytes")
        if not isinstance(verifier, bytes) or not 1 <= len(verifier) <= GROUP_BYTES:
            raise ValueError(f"a stored SRP verifier must be 1 to {GROUP_BYTES} bytes")
        v = _int(verifier)
        if not 1 < v < _N:
            raise ValueError("a stored SRP verifier must lie strictly between 1 and N")
        self.salt = salt
        self._v = v
        self._genuine = genuine
        self._b: int | None = secrets.randbits(8 * _EPHEMERAL_BYTES) | 1 << (8 * _EPHEMERAL_BYTES - 1)
        self._b_pub = (_K * v + powmod(_G, self._b, _N)) % _N
        #: The server's public ephemeral value, padded to 256 bytes.
        self.B = _pad(self._b_pub)

    def verify(self, A: bytes, M: bytes) -> bytes:
        """Check the client's ``A`` and proof ``M``; return HAMK, or raise ``AuthFailed``.

        One-shot: the secret b is forgotten on the first call, whatever the outcome,
        so a replayed or repeated attempt fails. HAMK is never computed for a wrong M.
        """
        b, self._b = self._b, None
        if b is None:
            raise AuthFailed()
        if not isinstance(A, bytes) or not 1 <= len(A) <= GROUP_BYTES:
            raise AuthFailed()
        if not isinstance(M, bytes) or len(M) != PROOF_BYTES:
            raise AuthFailed()
        a_pub = _int(A)
        # SRP-6a safety check (A mod N != 0); values >= N never come from an honest client.
        if a_pub % _N == 0 or a_pub >= _N:
            raise AuthFailed()
        u = _int(_h(_pad(a_pub), self.B))
        if u == 0:
            raise AuthFailed()
        shared = powmod(a_pub * powmod(self._v, u, _N) % _N, b, _N)
        key = _h(_minimal(shared))
        expected = _proof(self.username, self.salt, a_pub, self._b_pub, key)
        # Both operands are evaluated before combining, so a decoy costs the same as a real account.
        proof_ok = hmac.compare_digest(expected, M)
        if not (proof_ok and self._genuine):
            raise AuthFailed()
        return _server_proof(a_pub, M, key)

    @property
    def used(self) -> bool:
        """True once ``verify`` has been called."""
        return self._b is None


def start_login(username: str, salt: bytes, verifier: bytes) -> tuple[LoginChallenge, bytes]:
    """Begin a login against a stored ``(salt, verifier)``; return the challenge object and B."""
    challenge = LoginChallenge(username, salt, verifier)
    return challenge, challenge.B


def begin_login(server_secret: bytes, username: str, stored: tuple[bytes, bytes] | None) -> LoginChallenge:
    """Begin a login whether or not the account exists; this is what the web layer calls.

    ``stored`` is the account's ``(salt, verifier)`` or ``None``. The decoy is always
    computed, so both cases do the same work; with ``None`` the challenge can never succeed.
    Send ``challenge.salt`` and ``challenge.B`` to the client. Raises ``InvalidUsername``
    for a name that breaks the rule (no account can have such a name, so that reveals nothing).
    """
    decoy = decoy_credentials(server_secret, username)
    if stored is None:
        return LoginChallenge(username, decoy[0], decoy[1], genuine=False)
    return LoginChallenge(username, stored[0], stored[1])


@dataclass
class _ClientState:
    username: str
    verification_key: bytes
    a: int
    a_pub: int
    expected_hamk: bytes | None = None
    session_key: bytes | None = None


class ClientLogin:
    """The client's half of a login: A first, then M from (salt, B), then a check of HAMK."""

    def __init__(self, username: str, verification_key: bytes) -> None:
        _check_key(verification_key)
        a = secrets.randbits(8 * _EPHEMERAL_BYTES) | 1 << (8 * _EPHEMERAL_BYTES - 1)
        self._state = _ClientState(canonical_username(username), verification_key, a, powmod(_G, a, _N))
        #: The client's public ephemeral value, padded to 256 bytes.
        self.A = _pad(self._state.a_pub)

    def process_challenge(self, salt: bytes, B: bytes) -> bytes:
        """Return the proof M for the server's ``salt`` and ``B``; raise ``AuthFailed`` for a bad B."""
        state = self._state
        if not isinstance(salt, bytes) or not 1 <= len(salt) <= MAX_SALT_BYTES:
            raise AuthFailed()
        if not isinstance(B, bytes) or not 1 <= len(B) <= GROUP_BYTES:
            raise AuthFailed()
        b_pub = _int(B)
        if b_pub % _N == 0 or b_pub >= _N:
            raise AuthFailed()
        u = _int(_h(_pad(state.a_pub), _pad(b_pub)))
        if u == 0:
            raise AuthFailed()
        x = _private_key(state.username, salt, state.verification_key)
        base = (b_pub - _K * powmod(_G, x, _N)) % _N
        shared = powmod(base, state.a + u * x, _N)
        key = _h(_minimal(shared))
        proof = _proof(state.username, salt, state.a_pub, b_pub, key)
        state.expected_hamk = _server_proof(state.a_pub, proof, key)
        state.session_key = key
        return proof

    def verify_session(self, HAMK: bytes) -> bytes:
        """Check the server's proof; return the shared session key K, or raise ``AuthFailed``."""
        state = self._state
        expected = state.expected_hamk
        if expected is None or not isinstance(HAMK, bytes) or not hmac.compare_digest(expected, HAMK):
            raise AuthFailed()
        assert state.session_key is not None
        return state.session_key


def client_login(
    username: str, verification_key: bytes
) -> tuple[bytes, Callable[[bytes, bytes], bytes], Callable[[bytes], bytes]]:
    """Start a client login; return ``(A, process_challenge, verify_session)``.

    ``process_challenge(salt, B) -> M`` and ``verify_session(HAMK) -> K`` are the bound
    methods of a ``ClientLogin``; use that class directly for typed code.
    """
    login = ClientLogin(username, verification_key)
    return login.A, login.process_challenge, login.verify_session
