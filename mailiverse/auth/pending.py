"""Hold SRP login challenges between the two HTTP round trips: one-shot handles with expiry and a size cap.

Two keepers provide ``IPendingLogins``: ``MemoryPendingLogins`` (one process; wraps the synchronous
``PendingLogins``) and, in ``mailiverse.accounts.pending``, a database keeper that lets any front end
finish a login another one started. For the latter this module seals a challenge (its secret
exponent b included) with AES-256-GCM under a key bound to the handle itself; see ``docs/auth.md``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from collections import OrderedDict
from collections.abc import Awaitable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from zope.interface import Interface, implementer

from mailiverse.auth.clock import TimeSource, as_clock
from mailiverse.auth.keys import subkey
from mailiverse.auth.srp6a import (
    _N,
    GROUP_BYTES,
    MAX_SALT_BYTES,
    AuthFailed,
    LoginChallenge,
)
from mailiverse.auth.usernames import MAX_USERNAME_LENGTH, InvalidUsername, canonical_username

#: Bytes of randomness in a handle.
HANDLE_BYTES = 32
#: Longest handle text accepted (the URL-safe base64 of HANDLE_BYTES, unpadded, is 43).
MAX_HANDLE_LENGTH = 64


def _key(handle: str) -> bytes:
    # The table is keyed by a digest of the handle, so lookup timing depends on a value
    # the caller cannot choose, and a memory dump does not show usable handles.
    return hashlib.sha256(handle.encode("ascii")).digest()


def new_handle() -> str:
    """A fresh handle: HANDLE_BYTES random bytes, URL-safe base64 without padding (43 characters)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(HANDLE_BYTES)).rstrip(b"=").decode("ascii")


def is_well_formed_handle(handle: object) -> bool:
    """Whether ``handle`` is ASCII text of 1 to MAX_HANDLE_LENGTH characters (checked before any lookup)."""
    return isinstance(handle, str) and 0 < len(handle) <= MAX_HANDLE_LENGTH and handle.isascii()


def handle_digest(handle: str) -> bytes:
    """The stored form of a handle: SHA-256 of its ASCII text (the handle itself is never stored)."""
    return _key(handle)


class IPendingLogins(Interface):
    """Where challenges wait between round trips. Every method returns an awaitable.

    ``put`` keeps a challenge and returns its new handle; ``take`` removes and returns it, so a
    handle works at most once, and raises ``AuthFailed`` for an unknown, used, expired, malformed
    or tampered handle; ``purge_expired`` drops expired entries and says how many.
    """

    def put(challenge: LoginChallenge) -> Awaitable[str]:
        """Keep ``challenge``; return its handle."""

    def take(handle: str) -> Awaitable[LoginChallenge]:
        """Remove and return the challenge for ``handle``, or raise ``AuthFailed``."""

    def purge_expired() -> Awaitable[int]:
        """Delete expired entries; return how many."""


class PendingLogins:
    """In-memory store of ``LoginChallenge`` objects keyed by a random handle.

    ``put`` returns a handle to send to the client; ``take`` removes and returns the
    challenge, so a handle works once. Entries older than ``ttl`` seconds are gone; when
    ``max_entries`` are held, expired ones are dropped first, then the oldest.
    """

    def __init__(self, clock: TimeSource = None, ttl: float = 120.0, max_entries: int = 10_000) -> None:
        if ttl <= 0 or max_entries < 1:
            raise ValueError("PendingLogins needs ttl > 0 and max_entries >= 1")
        self._now = as_clock(clock)
        self._ttl = ttl
        self._max = max_entries
        self._entries: OrderedDict[bytes, tuple[float, LoginChallenge]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, challenge: LoginChallenge) -> str:
        """Keep ``challenge`` and return its new handle (URL-safe base64 text)."""
        now = self._now()
        self._drop_expired(now)
        while len(self._entries) >= self._max:
            self._entries.popitem(last=False)
        handle = new_handle()
        self._entries[_key(handle)] = (now + self._ttl, challenge)
        return handle

    def take(self, handle: str) -> LoginChallenge:
        """Remove and return the challenge for ``handle``; raise ``AuthFailed`` if unknown, used or expired."""
        if not is_well_formed_handle(handle):
            raise AuthFailed()
        entry = self._entries.pop(_key(handle), None)
        if entry is None:
            raise AuthFailed()
        deadline, challenge = entry
        if self._now() >= deadline:
            raise AuthFailed()
        return challenge

    def purge_expired(self) -> int:
        """Drop every expired challenge now; return how many."""
        return self._drop_expired(self._now())

    def _drop_expired(self, now: float) -> int:
        # Insertion order is deadline order (ttl is fixed), so expired entries are at the front.
        dropped = 0
        while self._entries:
            deadline, _ = next(iter(self._entries.values()))
            if deadline > now:
                break
            self._entries.popitem(last=False)
            dropped += 1
        return dropped


@implementer(IPendingLogins)
class MemoryPendingLogins:
    """``IPendingLogins`` over an in-memory ``PendingLogins``: for one process (tools, tests)."""

    def __init__(self, pending: PendingLogins | None = None, clock: TimeSource = None) -> None:
        self.pending = pending if pending is not None else PendingLogins(clock)

    def __len__(self) -> int:
        return len(self.pending)

    async def put(self, challenge: LoginChallenge) -> str:
        return self.pending.put(challenge)

    async def take(self, handle: str) -> LoginChallenge:
        return self.pending.take(handle)

    async def purge_expired(self) -> int:
        return self.pending.purge_expired()


# -- sealing a challenge for storage outside the process ------------------------------------

#: Format tag of a sealed challenge (first byte of the plaintext, and part of the AAD).
SEAL_VERSION = 1
_NONCE_BYTES = 12
_TAG_BYTES = 16
_B_BYTES = 32
# version | genuine | b | v | B | salt length | salt (padded) | name length | name (padded):
# every plaintext has the same length, so a sealed decoy is the same size as a real challenge.
_PLAIN_BYTES = 1 + 1 + _B_BYTES + GROUP_BYTES + GROUP_BYTES + 1 + MAX_SALT_BYTES + 1 + MAX_USERNAME_LENGTH
#: Exact length of every sealed challenge (nonce, ciphertext, tag).
SEALED_BYTES = _NONCE_BYTES + _PLAIN_BYTES + _TAG_BYTES
_AAD_LABEL = b"mailiverse pending login\x00"


def _seal_key(server_secret: bytes, handle: str) -> bytes:
    # Bound to the handle, which is never stored: the database (even with the server secret,
    # which lives there too) does not hold what it takes to open a row.
    return hmac.new(subkey(server_secret, "pending login seal"), handle.encode("ascii"), hashlib.sha256).digest()


def _aad(handle: str, expires_ms: int) -> bytes:
    # The digest and the deadline are the row's other columns: a row cannot borrow another's
    # sealed state, and its deadline cannot be moved.
    return _AAD_LABEL + bytes([SEAL_VERSION]) + handle_digest(handle) + expires_ms.to_bytes(8, "big", signed=True)


def _padded(data: bytes, size: int) -> bytes:
    return bytes([len(data)]) + data + bytes(size - len(data))


def seal_challenge(server_secret: bytes, handle: str, expires_ms: int, challenge: LoginChallenge) -> bytes:
    """Return ``challenge`` (its secret b included) encrypted with AES-256-GCM for the handle ``handle``.

    Raises ``ValueError`` for a challenge already used. The result is SEALED_BYTES long for every
    challenge, real or decoy.
    """
    b = challenge._b
    if b is None:
        raise ValueError("a used challenge cannot be kept")
    name = challenge.username.encode("ascii")
    plain = (
        bytes([SEAL_VERSION, 1 if challenge._genuine else 0])
        + b.to_bytes(_B_BYTES, "big")
        + challenge._v.to_bytes(GROUP_BYTES, "big")
        + challenge.B
        + _padded(challenge.salt, MAX_SALT_BYTES)
        + _padded(name, MAX_USERNAME_LENGTH)
    )
    assert len(plain) == _PLAIN_BYTES
    nonce = os.urandom(_NONCE_BYTES)
    return nonce + AESGCM(_seal_key(server_secret, handle)).encrypt(nonce, plain, _aad(handle, expires_ms))


def _unpadded(data: bytes, size: int) -> bytes:
    length = data[0]
    if not 0 < length <= size or any(data[1 + length : 1 + size]):
        raise AuthFailed()
    return data[1 : 1 + length]


class _RestoredChallenge(LoginChallenge):
    """A challenge rebuilt from its sealed state: the same b, v and B as when it was put away."""

    def __init__(self, username: str, salt: bytes, v: int, b: int, b_pub: int, genuine: bool) -> None:
        # Deliberately does not call LoginChallenge.__init__, which would draw a new b.
        self.username = username
        self.salt = salt
        self._v = v
        self._genuine = genuine
        self._b = b
        self._b_pub = b_pub
        self.B = b_pub.to_bytes(GROUP_BYTES, "big")


def open_sealed_challenge(server_secret: bytes, handle: str, expires_ms: int, sealed: bytes) -> LoginChallenge:
    """Decrypt and check what ``seal_challenge`` made; raise ``AuthFailed`` for anything else."""
    if not isinstance(sealed, bytes) or len(sealed) != SEALED_BYTES or not is_well_formed_handle(handle):
        raise AuthFailed()
    try:
        plain = AESGCM(_seal_key(server_secret, handle)).decrypt(
            sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], _aad(handle, expires_ms)
        )
    except (InvalidTag, ValueError):
        raise AuthFailed() from None
    if len(plain) != _PLAIN_BYTES or plain[0] != SEAL_VERSION or plain[1] not in (0, 1):
        raise AuthFailed()
    at = 2
    b = int.from_bytes(plain[at : at + _B_BYTES], "big")
    at += _B_BYTES
    v = int.from_bytes(plain[at : at + GROUP_BYTES], "big")
    at += GROUP_BYTES
    b_pub = int.from_bytes(plain[at : at + GROUP_BYTES], "big")
    at += GROUP_BYTES
    salt = _unpadded(plain[at : at + 1 + MAX_SALT_BYTES], MAX_SALT_BYTES)
    at += 1 + MAX_SALT_BYTES
    name = _unpadded(plain[at : at + 1 + MAX_USERNAME_LENGTH], MAX_USERNAME_LENGTH)
    if not (1 < v < _N and 0 < b_pub < _N and b > 0):
        raise AuthFailed()
    try:
        text = name.decode("ascii")
        username = canonical_username(text)
    except (UnicodeDecodeError, InvalidUsername):
        raise AuthFailed() from None
    if username != text:
        raise AuthFailed()
    return _RestoredChallenge(username, salt, v, b, b_pub, plain[1] == 1)
