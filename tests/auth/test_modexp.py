"""The SRP exponentiation helper agrees with Python's ``pow`` and refuses what it cannot do."""

from __future__ import annotations

import importlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailiverse.auth import modexp, srp6a

N = srp6a._N


def test_gmp_is_installed_and_used() -> None:
    """gmpy2 is a declared dependency, so a project install takes the fast, constant-time path."""
    assert importlib.util.find_spec("gmpy2") is not None
    assert modexp.ACCELERATED


@given(st.integers(min_value=0, max_value=N * 3), st.integers(min_value=0, max_value=2**300))
def test_agrees_with_pow_in_the_srp_group(base: int, exponent: int) -> None:
    assert modexp.powmod(base, exponent, N) == pow(base, exponent, N)


@given(
    st.integers(min_value=0, max_value=2**80),
    st.integers(min_value=0, max_value=2**80),
    st.integers(min_value=1, max_value=2**70).map(lambda m: 2 * m + 1),
)
def test_agrees_with_pow_for_any_odd_modulus(base: int, exponent: int, modulus: int) -> None:
    assert modexp.powmod(base, exponent, modulus) == pow(base, exponent, modulus)


@pytest.mark.parametrize(("exponent", "modulus"), [(-1, N), (5, 1), (5, 2), (5, 2**64)])
def test_refuses_negative_exponents_and_even_or_tiny_moduli(exponent: int, modulus: int) -> None:
    with pytest.raises(ValueError, match="odd modulus"):
        modexp.powmod(3, exponent, modulus)


def test_fallback_without_gmp_gives_the_same_login(monkeypatch: pytest.MonkeyPatch) -> None:
    """A platform without gmpy2 still logs in: a verifier made with GMP verifies without it."""
    key = bytes(range(32))
    salt, verifier = srp6a.create_verifier("alice", key)
    monkeypatch.setattr(modexp, "gmpy2", None)
    login = srp6a.ClientLogin("alice", key)
    challenge, B = srp6a.start_login("alice", salt, verifier)
    proof = login.process_challenge(salt, B)
    assert len(login.verify_session(challenge.verify(login.A, proof))) == 32
