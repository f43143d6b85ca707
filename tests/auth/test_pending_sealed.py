"""Tests for sealing a LoginChallenge for storage outside the process, and the IPendingLogins memory keeper."""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from mailiverse.auth.keys import subkey
from mailiverse.auth.pending import (
    SEALED_BYTES,
    IPendingLogins,
    MemoryPendingLogins,
    PendingLogins,
    handle_digest,
    new_handle,
    open_sealed_challenge,
    seal_challenge,
)
from mailiverse.auth.srp6a import (
    AuthFailed,
    ClientLogin,
    begin_login,
    create_verifier,
    start_login,
)

Run = Callable[[Coroutine[Any, Any, Any]], Any]
EXPIRES_MS = 1_700_000_120_000


def _decoy_key(server_secret: bytes, name: str) -> bytes:
    # The key behind a decoy verifier, as srp6a derives it: only a test (holding the secret) knows it.
    return hmac.new(subkey(server_secret, "srp decoy key"), name.encode("ascii"), hashlib.sha256).digest()


def test_restored_challenge_completes_a_real_login(server_secret: bytes) -> None:
    """A challenge sealed and opened again keeps b and v: the client's proof checks and HAMK matches."""
    key = os.urandom(32)
    salt, verifier = create_verifier("carol", key)
    challenge = begin_login(server_secret, "carol", (salt, verifier))
    handle = new_handle()
    sealed = seal_challenge(server_secret, handle, EXPIRES_MS, challenge)
    restored = open_sealed_challenge(server_secret, handle, EXPIRES_MS, sealed)
    assert (restored.username, restored.salt, restored.B) == ("carol", salt, challenge.B)
    login = ClientLogin("carol", key)
    login.verify_session(restored.verify(login.A, login.process_challenge(restored.salt, restored.B)))
    with pytest.raises(AuthFailed):
        restored.verify(login.A, login.process_challenge(restored.salt, restored.B))


def test_restored_decoy_still_never_succeeds(server_secret: bytes) -> None:
    """A sealed decoy stays a decoy: even the proof made with the decoy's own key is refused."""
    challenge = begin_login(server_secret, "nobody", None)
    handle = new_handle()
    restored = open_sealed_challenge(
        server_secret, handle, EXPIRES_MS, seal_challenge(server_secret, handle, EXPIRES_MS, challenge)
    )
    login = ClientLogin("nobody", _decoy_key(server_secret, "nobody"))
    proof = login.process_challenge(restored.salt, restored.B)
    with pytest.raises(AuthFailed):
        restored.verify(login.A, proof)


def test_sealed_size_is_the_same_for_every_challenge(server_secret: bytes) -> None:
    """Real and decoy challenges, short and long names and salts, all seal to SEALED_BYTES."""
    long_name = "a" * 64
    long_salt = os.urandom(64)
    _, verifier = create_verifier(long_name, os.urandom(32))
    challenges = [
        begin_login(server_secret, "x", None),
        begin_login(server_secret, long_name, (long_salt, verifier)),
        start_login("bob", os.urandom(16), create_verifier("bob", os.urandom(32))[1])[0],
    ]
    sizes = {len(seal_challenge(server_secret, new_handle(), EXPIRES_MS, c)) for c in challenges}
    assert sizes == {SEALED_BYTES}


def test_sealed_state_shows_no_secret(server_secret: bytes) -> None:
    """Neither b, the verifier, the name nor the handle appear in the sealed bytes."""
    salt, verifier = create_verifier("dave", os.urandom(32))
    challenge = begin_login(server_secret, "dave", (salt, verifier))
    b = challenge._b
    assert b is not None
    handle = new_handle()
    sealed = seal_challenge(server_secret, handle, EXPIRES_MS, challenge)
    for secret_part in (b.to_bytes(32, "big")[:8], verifier[:16], b"dave", handle.encode("ascii")[:16], salt):
        assert secret_part not in sealed


@pytest.mark.parametrize("position", [0, 11, 12, 300, SEALED_BYTES - 17, SEALED_BYTES - 1])
def test_any_flipped_bit_is_auth_failed(server_secret: bytes, position: int) -> None:
    """A change anywhere in nonce, ciphertext or tag is the generic AuthFailed."""
    challenge = begin_login(server_secret, "erin", None)
    handle = new_handle()
    sealed = bytearray(seal_challenge(server_secret, handle, EXPIRES_MS, challenge))
    sealed[position] ^= 0x01
    with pytest.raises(AuthFailed):
        open_sealed_challenge(server_secret, handle, EXPIRES_MS, bytes(sealed))


def test_state_is_bound_to_handle_deadline_and_secret(server_secret: bytes) -> None:
    """Another handle, a moved deadline, another server secret or a cut state all fail alike."""
    challenge = begin_login(server_secret, "frank", None)
    handle = new_handle()
    sealed = seal_challenge(server_secret, handle, EXPIRES_MS, challenge)
    attempts = [
        (server_secret, new_handle(), EXPIRES_MS, sealed),
        (server_secret, handle, EXPIRES_MS + 60_000, sealed),
        (os.urandom(32), handle, EXPIRES_MS, sealed),
        (server_secret, handle, EXPIRES_MS, sealed[:-1]),
        (server_secret, handle, EXPIRES_MS, sealed + b"\0"),
        (server_secret, "é" * 10, EXPIRES_MS, sealed),
    ]
    for secret, other_handle, deadline, state in attempts:
        with pytest.raises(AuthFailed):
            open_sealed_challenge(secret, other_handle, deadline, state)
    assert open_sealed_challenge(server_secret, handle, EXPIRES_MS, sealed).B == challenge.B


def test_used_challenge_cannot_be_sealed(server_secret: bytes) -> None:
    """Once verify has run, b is gone and sealing refuses rather than store an empty state."""
    challenge = begin_login(server_secret, "gina", None)
    with pytest.raises(AuthFailed):
        challenge.verify(b"\x02", b"\0" * 32)
    with pytest.raises(ValueError):
        seal_challenge(server_secret, new_handle(), EXPIRES_MS, challenge)


def test_handle_digest_is_sha256_of_the_handle() -> None:
    """The stored key of a handle is SHA-256 of its text, and handles are 43 random characters."""
    first, second = new_handle(), new_handle()
    assert len(first) == 43 and first != second
    assert handle_digest(first) == hashlib.sha256(first.encode("ascii")).digest()


def test_memory_keeper_provides_interface(clock: Clock, run: Run) -> None:
    """MemoryPendingLogins provides IPendingLogins and keeps one-shot handles with expiry."""
    keeper = MemoryPendingLogins(PendingLogins(clock, ttl=60))
    assert verifyObject(IPendingLogins, keeper)
    challenge = start_login("hank", os.urandom(16), create_verifier("hank", os.urandom(32))[1])[0]
    handle = run(keeper.put(challenge))
    assert run(keeper.take(handle)) is challenge
    with pytest.raises(AuthFailed):
        run(keeper.take(handle))
    stale = [run(keeper.put(challenge)) for _ in range(3)]
    clock.advance(61)
    assert run(keeper.purge_expired()) == 3 and len(keeper) == 0
    with pytest.raises(AuthFailed):
        run(keeper.take(stale[0]))
