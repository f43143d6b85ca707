"""Recovery codes: 50 random bits each, read leniently, stored as keyed hashes bound to the account."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from mailiverse.auth.recovery import (
    ALPHABET,
    CODE_CHARS,
    RecoveryCodeHasher,
    new_recovery_codes,
    normalise_recovery_code,
)

SECRET = b"s" * 32


def test_codes_are_distinct_and_carry_fifty_bits() -> None:
    """Ten distinct codes of ten base32 characters (50 bits each), shown as XXXXX-XXXXX."""
    codes = new_recovery_codes()
    assert len(codes) == len(set(codes)) == 10
    for code in codes:
        assert len(code) == 11 and code[5] == "-"
        assert all(ch in ALPHABET for ch in code.replace("-", ""))
    assert CODE_CHARS * math.log2(len(ALPHABET)) == 50


def test_typing_is_lenient_but_nothing_else_is_a_code() -> None:
    """Case, spaces, hyphens and the look-alikes O/I/L do not matter; anything else is no code."""
    assert normalise_recovery_code(" abcde-fghjk ") == "ABCDEFGHJK"
    assert normalise_recovery_code("O1IL0 2345 6") == "01110234 56".replace(" ", "")
    for bad in ("", "ABCDE", "ABCDE-FGHJKM", "ABCDE-FGHJ!", "ABCDE-FGHJU", "ÄBCDE-FGHJK", "x" * 40, None, 5):
        assert normalise_recovery_code(bad) is None


def test_hashes_are_keyed_and_bound_to_the_account() -> None:
    """The same code hashes differently for another account and under another server secret."""
    hasher = RecoveryCodeHasher(SECRET)
    code = new_recovery_codes(1)[0]
    assert hasher.digest(1, code) == hasher.digest(1, code.lower().replace("-", ""))
    assert hasher.digest(1, code) != hasher.digest(2, code)
    assert hasher.digest(1, code) != RecoveryCodeHasher(b"t" * 32).digest(1, code)


def test_match_finds_only_the_code_typed() -> None:
    """match returns the stored hash the typed code names, and None for any other text or account."""
    hasher = RecoveryCodeHasher(SECRET)
    codes = new_recovery_codes()
    stored = [hasher.digest(7, c) for c in codes]
    assert hasher.match(7, codes[4].lower(), stored) == stored[4]
    assert hasher.match(8, codes[4], stored) is None
    assert hasher.match(7, "not a code", stored) is None
    assert hasher.match(7, codes[4], []) is None


@given(st.text(max_size=40))
def test_no_typed_text_matches_codes_it_is_not(typed: str) -> None:
    """Random text never matches a fresh set of codes unless it normalises to one of them."""
    hasher = RecoveryCodeHasher(SECRET)
    codes = new_recovery_codes(3)
    stored = [hasher.digest(1, c) for c in codes]
    normal = normalise_recovery_code(typed)
    expected = normal is not None and normal in {c.replace("-", "") for c in codes}
    assert (hasher.match(1, typed, stored) is not None) == expected
