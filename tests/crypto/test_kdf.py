"""Password KDF descriptions (mailiverse.crypto.kdf): their JSON form, their bounds, and the keys they give."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import pytest
from argon2.low_level import Type, hash_secret_raw

from mailiverse.crypto import kdf, pbkdf

PASSWORD = "one password for two accounts"


def _argon2(raw_salt: bytes, **fields: Any) -> dict[str, Any]:
    return {"kdf": "argon2id", "salt": base64.b64encode(raw_salt).decode(), "m": 65536, "t": 1, "p": 1, **fields}


def test_description_round_trips_through_json_and_storage() -> None:
    """A new description survives to_json/parse_kdf and canonical/parse_kdf_text unchanged; the PBKDF2 rule too."""
    params = kdf.new_kdf()
    assert kdf.parse_kdf(params.to_json()) == params
    assert kdf.parse_kdf_text(params.canonical()) == params
    assert params.canonical() == kdf.parse_kdf_text(params.canonical()).canonical()
    assert params.to_json() == {
        "kdf": "argon2id",
        "salt": base64.b64encode(params.salt).decode(),
        "m": kdf.DEFAULT_MEMORY_KIB,
        "t": kdf.DEFAULT_ITERATIONS,
        "p": kdf.DEFAULT_PARALLELISM,
    }
    assert kdf.parse_kdf({"kdf": "pbkdf2-sha256"}) == kdf.PBKDF2_RULE
    assert kdf.parse_kdf_text(kdf.PBKDF2_RULE.canonical()) == kdf.PBKDF2_RULE


def test_new_descriptions_have_random_salts_and_give_different_keys() -> None:
    """Two new descriptions differ in their 16-byte salts, so one password gives two unrelated key pairs."""
    first, second = kdf.new_kdf(), kdf.new_kdf()
    assert len(first.salt) == len(second.salt) == 16 and first.salt != second.salt
    keys_first, keys_second = kdf.derive_keys(PASSWORD, first), kdf.derive_keys(PASSWORD, second)
    assert keys_first[0] != keys_second[0] and keys_first[1] != keys_second[1]
    assert keys_first[0] != keys_first[1]
    assert kdf.derive_keys(PASSWORD, first) == keys_first


def test_defaults_cost_at_least_64_mib() -> None:
    """Today's parameters use at least 64 MiB and more than one pass (the browser measurement is in tests/browser)."""
    params = kdf.new_kdf()
    assert params.memory_kib >= 64 * 1024 and params.iterations >= 2 and params.parallelism == 1
    assert not params.needs_upgrade()
    assert kdf.PBKDF2_RULE.needs_upgrade()
    assert kdf.parse_kdf(_argon2(bytes(16))).needs_upgrade()


def test_argon2id_keys_are_hkdf_of_the_argon2id_output() -> None:
    """CryptoKey and VerificationKey are HKDF-SHA256 (no salt) of the 32-byte Argon2id v1.3 output (docs/auth.md)."""
    params = kdf.parse_kdf(_argon2(b"0123456789abcdef"))
    master = hash_secret_raw(
        PASSWORD.encode(), b"0123456789abcdef", time_cost=1, memory_cost=65536, parallelism=1, hash_len=32, type=Type.ID
    )

    def hkdf(info: bytes) -> bytes:
        prk = hmac.new(bytes(32), master, hashlib.sha256).digest()
        return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()

    assert kdf.derive_keys(PASSWORD, params) == (hkdf(b"mailiverse key block key"), hkdf(b"mailiverse srp password"))


def test_pbkdf2_rule_gives_the_original_keys() -> None:
    """The PBKDF2 rule is formats.md §5: the fixed salts, whatever the account."""
    assert kdf.derive_keys(PASSWORD, kdf.PBKDF2_RULE) == (pbkdf.crypto_key(PASSWORD), pbkdf.verification_key(PASSWORD))


@pytest.mark.parametrize(
    "value",
    [
        None,
        "argon2id",
        [],
        {},
        {"kdf": "scrypt"},
        {"kdf": "pbkdf2-sha256", "iterations": 1000},
        _argon2(bytes(16), m=65535),
        _argon2(bytes(16), m=1024 * 1024 + 1),
        _argon2(bytes(16), t=0),
        _argon2(bytes(16), t=65),
        _argon2(bytes(16), p=0),
        _argon2(bytes(16), p=17),
        _argon2(bytes(16), m=True),
        _argon2(bytes(16), t=2.0),
        _argon2(bytes(15)),
        _argon2(bytes(65)),
        _argon2(bytes(16), salt="not base64!"),
        _argon2(bytes(16), salt=None),
        _argon2(bytes(16), extra=1),
        {"kdf": "argon2id", "salt": base64.b64encode(bytes(16)).decode(), "m": 65536, "t": 1},
    ],
)
def test_malformed_or_weak_descriptions_are_refused(value: Any) -> None:
    """Unknown rules, missing or extra fields, out-of-bound numbers and salts raise InvalidKdf with a message."""
    with pytest.raises(kdf.InvalidKdf) as refused:
        kdf.parse_kdf(value)
    assert refused.value.message


def test_stored_text_is_bounded() -> None:
    """Stored text that is not JSON, or too long, is InvalidKdf."""
    for text in ("{", "x" * 600, "[]"):
        with pytest.raises(kdf.InvalidKdf):
            kdf.parse_kdf_text(text)
