"""Password key derivation rules: UTF-8 and the desktop-Java low-byte variant."""

from __future__ import annotations

import hashlib

import pytest

from mailiverse.crypto import pbkdf


def test_keys_use_their_salts() -> None:
    """crypto_key uses salt 0 and verification_key salt 1, 131072 iterations, 32 bytes."""
    want = hashlib.pbkdf2_hmac("sha256", b"pw", bytes.fromhex("c873418c7ed8ee89"), 131072, 32)
    assert pbkdf.crypto_key("pw") == want
    assert pbkdf.verification_key("pw") == pbkdf.derive("pw", pbkdf.SALT_VERIFICATION)
    assert pbkdf.crypto_key("pw") != pbkdf.verification_key("pw")


def test_java_desktop_takes_low_bytes() -> None:
    """The desktop variant keeps the low byte of each UTF-16 unit (surrogates included)."""
    assert pbkdf.password_bytes("pä€", variant="java-desktop") == b"p\xe4\xac"
    assert pbkdf.password_bytes("\U0001f600", variant="java-desktop") == b"\x3d\x00"
    assert pbkdf.password_bytes("pä", variant="utf8") == "pä".encode()


def test_unknown_variant_and_long_password_refused() -> None:
    """Unknown variants and passwords over the length cap raise ValueError."""
    with pytest.raises(ValueError):
        pbkdf.derive("x", pbkdf.SALT_CRYPTO, variant="latin1")
    with pytest.raises(ValueError):
        pbkdf.password_bytes("x" * (pbkdf.MAX_PASSWORD_LENGTH + 1))


def test_lone_surrogate_refused_in_utf8() -> None:
    """A password that is not valid Unicode cannot be encoded the web way."""
    with pytest.raises(ValueError):
        pbkdf.password_bytes("\ud800")
