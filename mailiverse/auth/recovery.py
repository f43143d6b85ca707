"""Recovery codes of the second factor: made at random, shown once, kept only as keyed hashes, each usable once.

A code is 10 characters of Crockford's base32 (50 random bits), shown as ``XXXXX-XXXXX``. What is typed is read
leniently: case, spaces and hyphens do not matter, and ``O``, ``I``, ``L`` read as ``0``, ``1``, ``1``. The stored
form is HMAC-SHA-256 under a subkey of the server secret over the account's id and the code, so a copy of the
database alone does not let anyone test guesses offline; a guess is compared with every unused code of the account
in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import struct
from collections.abc import Iterable

from mailiverse.auth.keys import subkey

#: Crockford's base32 alphabet (no I, L, O, U).
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_CHARS = 10
#: How many codes an account gets at a time.
CODE_COUNT = 10
#: Longest text accepted as a typed code (spaces and hyphens included).
MAX_TYPED_LENGTH = 32
_READ_AS = str.maketrans({"O": "0", "I": "1", "L": "1"})


def new_recovery_codes(count: int = CODE_COUNT) -> list[str]:
    """``count`` distinct fresh codes, formatted ``XXXXX-XXXXX``."""
    codes: list[str] = []
    while len(codes) < count:
        raw = "".join(secrets.choice(ALPHABET) for _ in range(CODE_CHARS))
        shown = f"{raw[:5]}-{raw[5:]}"
        if shown not in codes:
            codes.append(shown)
    return codes


def normalise_recovery_code(typed: object) -> str | None:
    """The 10 characters a typed code means, or None if it cannot be a code."""
    if not isinstance(typed, str) or len(typed) > MAX_TYPED_LENGTH or not typed.isascii():
        return None
    text = "".join(typed.split()).replace("-", "").upper().translate(_READ_AS)
    if len(text) != CODE_CHARS or any(ch not in ALPHABET for ch in text):
        return None
    return text


class RecoveryCodeHasher:
    """The keyed hashes recovery codes are stored as, and the constant-time match of a typed code."""

    def __init__(self, server_secret: bytes) -> None:
        self._key = subkey(server_secret, "recovery-code")

    def digest(self, user_id: int, code: str) -> bytes:
        """The stored form of ``code`` (normalised or as shown) for the account ``user_id``."""
        normal = normalise_recovery_code(code)
        if normal is None:
            raise ValueError("not a recovery code")
        message = b"mailiverse recovery code\x00" + struct.pack(">Q", user_id) + normal.encode("ascii")
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def match(self, user_id: int, typed: object, stored: Iterable[bytes]) -> bytes | None:
        """The stored hash ``typed`` matches, or None. Every stored hash is compared, each in constant time, so the
        time taken says nothing about which (or whether one) matched."""
        normal = normalise_recovery_code(typed)
        # A malformed guess is still compared (against a hash nothing matches), so it takes the same time.
        candidate = self.digest(user_id, normal) if normal is not None else bytes(32)
        found: bytes | None = None
        for digest in stored:
            if hmac.compare_digest(candidate, digest) and normal is not None:
                found = digest
        return found


__all__ = [
    "CODE_CHARS",
    "CODE_COUNT",
    "MAX_TYPED_LENGTH",
    "RecoveryCodeHasher",
    "new_recovery_codes",
    "normalise_recovery_code",
]
