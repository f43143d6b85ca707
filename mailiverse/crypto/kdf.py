"""The password KDF of a modern account: its public description and the two keys it gives (docs/auth.md).

A description is public. The server keeps one per account and hands it to anyone who starts a login, so
the client can turn the password into the key-block key (CryptoKey) and the SRP password
(VerificationKey). Two rules exist:

* ``{"kdf": "argon2id", "salt": b64(16..64 bytes), "m": KiB, "t": passes, "p": lanes}``: the rule of new
  accounts. ``master = Argon2id v1.3(UTF-8 password, salt, t, m, p) -> 32 bytes``, then
  ``CryptoKey = HKDF-SHA256(master, info="mailiverse key block key")`` and
  ``VerificationKey = HKDF-SHA256(master, info="mailiverse srp password")`` (no HKDF salt, 32 bytes each).
  The salt is random per account, so no table of guesses serves two accounts.
* ``{"kdf": "pbkdf2-sha256"}``: the original rule (docs/formats.md §5: PBKDF2-HMAC-SHA256, 131072
  iterations, the same fixed salts for everyone). Legacy accounts keep it; modern accounts made before
  Argon2id have it until their next login, when the client moves them to Argon2id.

The bounds are checked on both sides: the server refuses a weaker description at sign-up, and a client
refuses one from a server that would make it use too little memory, or an absurd amount.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from mailiverse.crypto.pbkdf import crypto_key, password_bytes, verification_key

KDF_ARGON2ID = "argon2id"
KDF_PBKDF2 = "pbkdf2-sha256"
#: The rules this code knows, as ``GET /api/signup`` announces them (a client checks before it signs up).
KDF_NAMES = (KDF_ARGON2ID, KDF_PBKDF2)
#: Argon2 version 1.3 (0x13), the only one used.
ARGON2_VERSION = 0x13
#: Bytes of a new account's random KDF salt.
SALT_BYTES = 16
MIN_SALT_BYTES = 16
MAX_SALT_BYTES = 64
#: The parameters of new accounts: 128 MiB and 4 passes, 0.5 s or more in Chromium's WebAssembly
#: on the 2-CPU development machine (docs/auth.md has the measurement).
DEFAULT_MEMORY_KIB = 128 * 1024
DEFAULT_ITERATIONS = 4
DEFAULT_PARALLELISM = 1
#: What either side accepts: at least 64 MiB, at most 1 GiB (a phone must be able to run it).
MIN_MEMORY_KIB = 64 * 1024
MAX_MEMORY_KIB = 1024 * 1024
MIN_ITERATIONS = 1
MAX_ITERATIONS = 64
MIN_PARALLELISM = 1
MAX_PARALLELISM = 16
#: Longest stored description text (the canonical JSON of the largest salt is about 130 characters).
MAX_DESCRIPTION_CHARS = 512
KEY_BYTES = 32
_INFO_CRYPTO = b"mailiverse key block key"
_INFO_VERIFICATION = b"mailiverse srp password"


class InvalidKdf(ValueError):
    """A KDF description that is malformed, unknown or out of bounds; ``message`` says which field."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class KdfParams:
    """One account's KDF description. For ``pbkdf2-sha256`` the numbers are unused (fixed by the rule)."""

    kdf: str
    salt: bytes = b""
    memory_kib: int = 0
    iterations: int = 0
    parallelism: int = 0

    @property
    def is_argon2id(self) -> bool:
        return self.kdf == KDF_ARGON2ID

    def to_json(self) -> dict[str, Any]:
        """The description as the API sends it."""
        if not self.is_argon2id:
            return {"kdf": self.kdf}
        return {
            "kdf": self.kdf,
            "salt": base64.b64encode(self.salt).decode("ascii"),
            "m": self.memory_kib,
            "t": self.iterations,
            "p": self.parallelism,
        }

    def canonical(self) -> str:
        """The stored form: compact JSON with sorted keys."""
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))

    def needs_upgrade(self) -> bool:
        """True for the fixed-salt rule and for Argon2id weaker than today's defaults."""
        return not self.is_argon2id or (self.memory_kib < DEFAULT_MEMORY_KIB or self.iterations < DEFAULT_ITERATIONS)


#: The original rule (docs/formats.md §5).
PBKDF2_RULE = KdfParams(KDF_PBKDF2)


def new_kdf(salt: bytes | None = None) -> KdfParams:
    """A description for a new account or a new password: a fresh random salt and today's parameters."""
    return KdfParams(
        KDF_ARGON2ID,
        secrets.token_bytes(SALT_BYTES) if salt is None else bytes(salt),
        DEFAULT_MEMORY_KIB,
        DEFAULT_ITERATIONS,
        DEFAULT_PARALLELISM,
    )


def _number(value: dict[str, Any], name: str, low: int, high: int) -> int:
    number = value.get(name)
    if isinstance(number, bool) or not isinstance(number, int) or not low <= number <= high:
        raise InvalidKdf(f"the KDF field {name!r} must be an integer from {low} to {high}")
    return number


def parse_kdf(value: object) -> KdfParams:
    """The description in a JSON object (as the API and the store carry it); raises ``InvalidKdf``."""
    if not isinstance(value, dict):
        raise InvalidKdf("the KDF description must be a JSON object")
    name = value.get("kdf")
    if name == KDF_PBKDF2:
        if set(value) != {"kdf"}:
            raise InvalidKdf("the pbkdf2-sha256 rule takes no parameters")
        return PBKDF2_RULE
    if name != KDF_ARGON2ID:
        raise InvalidKdf(f"the KDF must be {KDF_ARGON2ID!r} (or {KDF_PBKDF2!r} for accounts made before it)")
    if set(value) != {"kdf", "salt", "m", "t", "p"}:
        raise InvalidKdf("an argon2id description has exactly the fields kdf, salt, m, t and p")
    text = value["salt"]
    if not isinstance(text, str) or len(text) > (MAX_SALT_BYTES + 2) // 3 * 4:
        raise InvalidKdf("the KDF salt must be base64 text")
    try:
        salt = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise InvalidKdf("the KDF salt is not valid base64") from None
    if not MIN_SALT_BYTES <= len(salt) <= MAX_SALT_BYTES:
        raise InvalidKdf(f"the KDF salt must be {MIN_SALT_BYTES} to {MAX_SALT_BYTES} bytes")
    return KdfParams(
        KDF_ARGON2ID,
        salt,
        _number(value, "m", MIN_MEMORY_KIB, MAX_MEMORY_KIB),
        _number(value, "t", MIN_ITERATIONS, MAX_ITERATIONS),
        _number(value, "p", MIN_PARALLELISM, MAX_PARALLELISM),
    )


def parse_kdf_text(text: str) -> KdfParams:
    """The description in its stored JSON text; raises ``InvalidKdf``."""
    if not isinstance(text, str) or len(text) > MAX_DESCRIPTION_CHARS:
        raise InvalidKdf("the KDF description is too long")
    try:
        value = json.loads(text)
    except ValueError:
        raise InvalidKdf("the KDF description is not JSON") from None
    return parse_kdf(value)


def _hkdf(master: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=info).derive(master)


def argon2id_master(password: str, params: KdfParams) -> bytes:
    """The 32-byte Argon2id output for ``password`` under ``params`` (the client's work; never the server's)."""
    from argon2.low_level import Type, hash_secret_raw  # noqa: PLC0415 - only clients load Argon2

    return hash_secret_raw(
        password_bytes(password),
        params.salt,
        time_cost=params.iterations,
        memory_cost=params.memory_kib,
        parallelism=params.parallelism,
        hash_len=KEY_BYTES,
        type=Type.ID,
        version=ARGON2_VERSION,
    )


def derive_keys(password: str, params: KdfParams) -> tuple[bytes, bytes]:
    """``(CryptoKey, VerificationKey)`` of ``password`` under the account's description."""
    if not params.is_argon2id:
        return crypto_key(password), verification_key(password)
    master = argon2id_master(password, params)
    return _hkdf(master, _INFO_CRYPTO), _hkdf(master, _INFO_VERIFICATION)


__all__ = [
    "DEFAULT_ITERATIONS",
    "DEFAULT_MEMORY_KIB",
    "DEFAULT_PARALLELISM",
    "KDF_ARGON2ID",
    "KDF_NAMES",
    "KDF_PBKDF2",
    "PBKDF2_RULE",
    "InvalidKdf",
    "KdfParams",
    "derive_keys",
    "new_kdf",
    "parse_kdf",
    "parse_kdf_text",
]
