"""Password keys (docs/formats.md §5): CryptoKey and VerificationKey by PBKDF2-HMAC-SHA256.

The salts are the original's public constants and the username is not an input.
Variant ``"utf8"`` is the web/iOS rule (canonical); ``"java-desktop"`` is the
BouncyCastle ``PKCS5PasswordToBytes`` rule of the desktop Java tools: the low byte of
each UTF-16 code unit.  The server's "mail-pbe" password goes through the latter.
"""

from __future__ import annotations

import hashlib

ITERATIONS = 131072
KEY_SIZE = 32
SALT_CRYPTO = bytes.fromhex("c873418c7ed8ee89")
SALT_VERIFICATION = bytes.fromhex("125314bb7e97ce55")
SALT_UNUSED = bytes.fromhex("0a4833fea7c22c71")
VARIANTS = ("utf8", "java-desktop")
#: Longest password accepted, in UTF-16 code units (bounds the work an input can cause).
MAX_PASSWORD_LENGTH = 4096


def password_bytes(password: str, *, variant: str = "utf8") -> bytes:
    """Return the bytes the given platform feeds to PBKDF2 for ``password``."""
    if not isinstance(password, str):
        raise TypeError("password must be str")
    units = password.encode("utf-16-le", "surrogatepass")
    if len(units) // 2 > MAX_PASSWORD_LENGTH:
        raise ValueError("password too long")
    if variant == "utf8":
        try:
            return password.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("password is not valid Unicode text") from None
    if variant == "java-desktop":
        return units[0::2]
    raise ValueError(f"unknown password variant {variant!r}; use one of {VARIANTS}")


def derive(password: str, salt: bytes, *, variant: str = "utf8") -> bytes:
    """PBKDF2-HMAC-SHA256(password bytes, salt, 131072 iterations) -> 32 bytes."""
    return hashlib.pbkdf2_hmac(
        "sha256",
        password_bytes(password, variant=variant),
        bytes(salt),
        ITERATIONS,
        KEY_SIZE,
    )


def crypto_key(password: str, *, variant: str = "utf8") -> bytes:
    """The CryptoKey: AES-256 key of the key block (salt 0)."""
    return derive(password, SALT_CRYPTO, variant=variant)


def verification_key(password: str, *, variant: str = "utf8") -> bytes:
    """The VerificationKey: the SRP "password" (salt 1)."""
    return derive(password, SALT_VERIFICATION, variant=variant)
