"""Tests for the modern SRP-6a login in mailiverse.auth.srp6a."""

from __future__ import annotations

import hashlib
import hmac
import os

import pytest
import srp._pysrp as pysrp

from mailiverse.auth import srp6a
from mailiverse.auth.keys import subkey
from mailiverse.auth.srp6a import (
    SRP_GROUP,
    AuthFailed,
    ClientLogin,
    begin_login,
    client_login,
    create_verifier,
    decoy_credentials,
    start_login,
)
from mailiverse.auth.usernames import InvalidUsername

N, G = pysrp.get_ng(pysrp.NG_2048, None, None)


def _key() -> bytes:
    return os.urandom(32)


def test_group_name_and_size() -> None:
    """The advertised group is the RFC 5054 2048-bit group with SHA-256."""
    assert SRP_GROUP == "rfc5054-2048-sha256"
    assert srp6a.GROUP_BYTES == 256
    assert N.bit_length() == 2048 and G == 2


def test_full_round_trip_agrees_on_key() -> None:
    """A client with the right VerificationKey logs in and both sides check each other's proof."""
    key = _key()
    salt, verifier = create_verifier("alice", key)
    A, process_challenge, verify_session = client_login("alice", key)
    challenge, B = start_login("alice", salt, verifier)
    M = process_challenge(salt, B)
    hamk = challenge.verify(A, M)
    session_key = verify_session(hamk)
    assert len(hamk) == 32 and len(session_key) == 32


def test_verifier_shape() -> None:
    """create_verifier returns a 16-byte random salt and a 256-byte verifier equal to g^x mod N."""
    key = _key()
    salt, verifier = create_verifier("bob", key)
    other_salt, _ = create_verifier("bob", key)
    assert len(salt) == 16 and len(verifier) == 256
    assert salt != other_salt
    x = int.from_bytes(hashlib.sha256(salt + hashlib.sha256(b"bob:" + key).digest()).digest(), "big")
    assert int.from_bytes(verifier, "big") == pow(G, x, N)


def test_username_is_canonical_inside_srp() -> None:
    """The lower-case name is what SRP hashes, so a mixed-case login matches a lower-case sign-up."""
    key = _key()
    salt, verifier = create_verifier("Carol.Smith", key)
    A, process_challenge, verify_session = client_login("CAROL.smith", key)
    challenge, B = start_login("carol.smith", salt, verifier)
    verify_session(challenge.verify(A, process_challenge(salt, B)))


def test_wrong_key_fails_without_server_proof() -> None:
    """A wrong VerificationKey gets the generic AuthFailed and never the server's proof."""
    salt, verifier = create_verifier("dave", _key())
    login = ClientLogin("dave", _key())
    challenge, B = start_login("dave", salt, verifier)
    M = login.process_challenge(salt, B)
    with pytest.raises(AuthFailed) as caught:
        challenge.verify(login.A, M)
    assert str(caught.value) == "authentication failed"


def test_other_users_verifier_fails() -> None:
    """The user name is bound into the proof: the right key under another name does not log in."""
    key = _key()
    salt, verifier = create_verifier("erin", key)
    login = ClientLogin("frank", key)
    challenge, B = start_login("erin", salt, verifier)
    with pytest.raises(AuthFailed):
        challenge.verify(login.A, login.process_challenge(salt, B))


@pytest.mark.parametrize("multiple", [0, 1, 2])
def test_server_rejects_a_congruent_to_zero(multiple: int) -> None:
    """A in {0, N, 2N} is refused (the SRP-6a safety check), whatever proof comes with it."""
    salt, verifier = create_verifier("gina", _key())
    challenge, _ = start_login("gina", salt, verifier)
    value = multiple * N
    A = value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")
    with pytest.raises(AuthFailed):
        challenge.verify(A, hashlib.sha256(b"any proof").digest())


def test_a_zero_with_matching_forged_proof_is_rejected() -> None:
    """With A = 0 the shared secret would be 0; even the proof computed from S = 0 is refused."""
    salt, verifier = create_verifier("hank", _key())
    challenge, B = start_login("hank", salt, verifier)
    forged_key = hashlib.sha256(b"").digest()
    forged = srp6a._proof("hank", salt, 0, int.from_bytes(B, "big"), forged_key)
    with pytest.raises(AuthFailed):
        challenge.verify(bytes(256), forged)


@pytest.mark.parametrize(
    "A, M",
    [
        (b"", bytes(32)),
        (b"\x01" * 257, bytes(32)),
        (b"\x05", b""),
        (b"\x05", bytes(33)),
        (b"\x05", bytes(31)),
    ],
)
def test_malformed_inputs_fail_generically(A: bytes, M: bytes) -> None:
    """Empty, oversized or wrong-length A and M give the same AuthFailed."""
    salt, verifier = create_verifier("ivan", _key())
    challenge, _ = start_login("ivan", salt, verifier)
    with pytest.raises(AuthFailed):
        challenge.verify(A, M)


def test_challenge_is_one_shot() -> None:
    """After one verify, even the correct proof is refused: a challenge cannot be replayed."""
    key = _key()
    salt, verifier = create_verifier("judy", key)
    login = ClientLogin("judy", key)
    challenge, B = start_login("judy", salt, verifier)
    M = login.process_challenge(salt, B)
    challenge.verify(login.A, M)
    assert challenge.used
    with pytest.raises(AuthFailed):
        challenge.verify(login.A, M)


def test_failed_attempt_burns_the_challenge() -> None:
    """A wrong proof consumes the challenge, so an attacker gets one guess per challenge."""
    key = _key()
    salt, verifier = create_verifier("kim", key)
    login = ClientLogin("kim", key)
    challenge, B = start_login("kim", salt, verifier)
    M = login.process_challenge(salt, B)
    with pytest.raises(AuthFailed):
        challenge.verify(login.A, bytes(32))
    with pytest.raises(AuthFailed):
        challenge.verify(login.A, M)


def test_each_challenge_has_a_fresh_b() -> None:
    """Two logins to the same account get different B values."""
    salt, verifier = create_verifier("lena", _key())
    _, first = start_login("lena", salt, verifier)
    _, second = start_login("lena", salt, verifier)
    assert first != second and len(first) == len(second) == 256


@pytest.mark.parametrize("multiple", [0, 1])
def test_client_rejects_b_congruent_to_zero(multiple: int) -> None:
    """The client refuses B = 0 or B = N from a hostile server."""
    login = ClientLogin("mike", _key())
    value = multiple * N
    with pytest.raises(AuthFailed):
        login.process_challenge(os.urandom(16), value.to_bytes(256, "big"))


def test_client_rejects_wrong_server_proof() -> None:
    """A server that does not know the verifier cannot produce a HAMK the client accepts."""
    key = _key()
    salt, verifier = create_verifier("nina", key)
    login = ClientLogin("nina", key)
    challenge, B = start_login("nina", salt, verifier)
    hamk = challenge.verify(login.A, login.process_challenge(salt, B))
    tampered = bytes([hamk[0] ^ 1]) + hamk[1:]
    with pytest.raises(AuthFailed):
        login.verify_session(tampered)
    assert login.verify_session(hamk)


def test_client_checks_hamk_only_after_challenge() -> None:
    """verify_session before process_challenge fails instead of trusting anything."""
    with pytest.raises(AuthFailed):
        ClientLogin("olga", _key()).verify_session(bytes(32))


def test_bad_verification_key_length_is_a_value_error() -> None:
    """The SRP password must be the 32-byte VerificationKey."""
    with pytest.raises(ValueError):
        create_verifier("pete", b"short")
    with pytest.raises(ValueError):
        ClientLogin("pete", bytes(33))


def test_invalid_username_is_refused() -> None:
    """Names that break the user-name rule never reach SRP."""
    with pytest.raises(InvalidUsername):
        create_verifier("bad name", _key())
    with pytest.raises(InvalidUsername):
        begin_login(os.urandom(32), "..", None)


def test_stored_verifier_out_of_range_is_refused() -> None:
    """A corrupt stored verifier (0, 1 or >= N) is a programming error, not a login."""
    for value in (0, 1, N):
        with pytest.raises(ValueError):
            start_login("quinn", os.urandom(16), value.to_bytes(256, "big"))


@pytest.fixture
def rfc5054_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    """Switch the srp package's pure-Python module to its RFC 5054 mode for one test."""
    monkeypatch.setattr(pysrp, "_rfc5054_compat", True)


@pytest.mark.usefixtures("rfc5054_reference")
def test_reference_client_logs_in_to_our_server() -> None:
    """The srp package's own client (RFC 5054 mode, SHA-256, 2048 bits) logs in against this server."""
    key = _key()
    salt, verifier = create_verifier("rita", key)
    user = pysrp.User("rita", key, hash_alg=pysrp.SHA256, ng_type=pysrp.NG_2048)
    _, A = user.start_authentication()
    challenge, B = start_login("rita", salt, verifier)
    M = user.process_challenge(salt, B)
    hamk = challenge.verify(A, M)
    user.verify_session(hamk)
    assert user.authenticated()


@pytest.mark.usefixtures("rfc5054_reference")
def test_our_client_logs_in_to_reference_server() -> None:
    """This client logs in against the srp package's Verifier, which also accepts our verifier format."""
    key = _key()
    salt, verifier = create_verifier("sam", key)
    login = ClientLogin("sam", key)
    reference = pysrp.Verifier("sam", salt, verifier, login.A, hash_alg=pysrp.SHA256, ng_type=pysrp.NG_2048)
    reference_salt, B = reference.get_challenge()
    hamk = reference.verify_session(login.process_challenge(reference_salt, B))
    assert hamk is not None and reference.authenticated()
    assert login.verify_session(hamk) == reference.get_session_key()


@pytest.mark.usefixtures("rfc5054_reference")
def test_reference_verifier_matches_ours() -> None:
    """Our verifier for (name, salt, key) is the srp package's g^x for the same inputs."""
    key = _key()
    salt, verifier = create_verifier("tess", key)
    x = pysrp.gen_x(hashlib.sha256, salt, "tess", key)
    assert int.from_bytes(verifier, "big") == pow(G, x, N)


def test_decoy_salt_is_stable_per_name(server_secret: bytes) -> None:
    """Asking twice for an unknown user gives the same salt, as it would for a real account."""
    first = begin_login(server_secret, "nobody-here", None)
    second = begin_login(server_secret, "Nobody-Here", None)
    assert first.salt == second.salt
    assert first.B != second.B


def test_decoy_salts_differ_by_name_and_secret(server_secret: bytes) -> None:
    """Decoy salts depend on the name and on the server secret, so they cannot be precomputed."""
    salts = {
        decoy_credentials(server_secret, "ursula")[0],
        decoy_credentials(server_secret, "victor")[0],
        decoy_credentials(os.urandom(32), "ursula")[0],
    }
    assert len(salts) == 3


def test_decoy_looks_like_a_real_account(server_secret: bytes) -> None:
    """Salt, verifier and B of a decoy have exactly the sizes and ranges of a real account's."""
    real_salt, real_verifier = create_verifier("wendy", _key())
    fake_salt, fake_verifier = decoy_credentials(server_secret, "xavier")
    assert len(fake_salt) == len(real_salt) and len(fake_verifier) == len(real_verifier)
    assert 1 < int.from_bytes(fake_verifier, "big") < N
    real = begin_login(server_secret, "wendy", (real_salt, real_verifier))
    fake = begin_login(server_secret, "xavier", None)
    assert len(real.B) == len(fake.B) == 256
    assert 1 < int.from_bytes(fake.B, "big") < N


def test_unknown_user_fails_exactly_like_wrong_password(server_secret: bytes) -> None:
    """For an unknown name the client completes the protocol and gets the same AuthFailed text."""
    messages = []
    salt, verifier = create_verifier("yara", _key())
    for name, stored in (("yara", (salt, verifier)), ("zed", None)):
        login = ClientLogin(name, _key())
        challenge = begin_login(server_secret, name, stored)
        M = login.process_challenge(challenge.salt, challenge.B)
        with pytest.raises(AuthFailed) as caught:
            challenge.verify(login.A, M)
        messages.append((type(caught.value), str(caught.value)))
    assert messages[0] == messages[1]


def test_decoy_cannot_succeed_even_with_the_decoy_key(server_secret: bytes) -> None:
    """A decoy challenge refuses even a proof made with the decoy's own secret key."""
    name = "ghost"
    decoy_key = hmac.new(subkey(server_secret, "srp decoy key"), name.encode(), hashlib.sha256).digest()
    login = ClientLogin(name, decoy_key)
    challenge = begin_login(server_secret, name, None)
    M = login.process_challenge(challenge.salt, challenge.B)
    with pytest.raises(AuthFailed):
        challenge.verify(login.A, M)


def test_real_account_via_begin_login_succeeds(server_secret: bytes) -> None:
    """begin_login with stored credentials gives a working challenge with the stored salt."""
    key = _key()
    salt, verifier = create_verifier("amy", key)
    login = ClientLogin("amy", key)
    challenge = begin_login(server_secret, "AMY", (salt, verifier))
    assert challenge.salt == salt
    login.verify_session(challenge.verify(login.A, login.process_challenge(challenge.salt, challenge.B)))


def test_begin_login_does_the_decoy_work_for_real_accounts_too(
    server_secret: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Known and unknown names both compute a decoy verifier, so they take the same path and time."""
    calls: list[str] = []
    original = srp6a.decoy_credentials

    def counting(secret: bytes, username: str) -> tuple[bytes, bytes]:
        calls.append(username)
        return original(secret, username)

    monkeypatch.setattr(srp6a, "decoy_credentials", counting)
    begin_login(server_secret, "bea", create_verifier("bea", _key()))
    begin_login(server_secret, "cid", None)
    assert calls == ["bea", "cid"]


def test_short_server_secret_is_refused() -> None:
    """A server secret under 32 bytes is a configuration error with a clear message."""
    with pytest.raises(ValueError, match="at least 32"):
        begin_login(b"too short", "dan", None)
