"""The original's password-protected environment blocks (docs/formats.md §7.1, §7.2).

* key block: ``AES-CBC-256-EmbedIV(CryptoKey, zlib(utf8("core.util.Environment!" + JSON)))``,
  the client environment (with the RSA private key) kept by the key server;
* mail block: ``b64`` of the same construction under ``PBKDF2(server "mail-pbe" password, salt 0)``,
  where the server password is converted the desktop-Java way (low byte per UTF-16 unit).

Reading is lenient (zero Adler-32, CESU-8 text, any JSON key order); any failure to decrypt
or parse is the one generic :class:`DecryptionError`.
"""

from __future__ import annotations

import base64
import binascii

from mailiverse.compat.typed import TypedEnvelopeError, decode_expected, encode_typed
from mailiverse.crypto import aes, lenient, pbkdf
from mailiverse.crypto.errors import CryptoError, DecryptionError

ENVIRONMENT_CLASS = "core.util.Environment"
#: Ceiling on an inflated environment: it holds a few keys and settings, never megabytes.
MAX_ENVIRONMENT_SIZE = 1024 * 1024
#: Ceiling on a stored block (either form) before any work is done on it.
MAX_BLOCK_SIZE = 2 * MAX_ENVIRONMENT_SIZE


def _check_environment(environment: dict[str, str]) -> None:
    if not isinstance(environment, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in environment.items()
    ):
        raise CryptoError("an environment maps strings to strings")


def environment_bytes(environment: dict[str, str]) -> bytes:
    """The plaintext of a block before compression: UTF-8 ``core.util.Environment!{...}``."""
    _check_environment(environment)
    return encode_typed(ENVIRONMENT_CLASS, environment).encode("utf-8")


def parse_environment(data: bytes) -> dict[str, str]:
    """Parse the (UTF-8 or CESU-8) typed text back into a string-to-string dict."""
    text = lenient.decode_text(data)
    value = decode_expected(text, ENVIRONMENT_CLASS)
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ValueError("environment is not a string-to-string map")
    return value


def _seal(key: bytes, environment: dict[str, str], iv: bytes | None) -> bytes:
    return aes.encrypt_embediv(key, lenient.deflate(environment_bytes(environment)), iv)


def _open(key: bytes, block: bytes) -> dict[str, str]:
    if len(block) > MAX_BLOCK_SIZE:
        raise DecryptionError()
    compressed = aes.decrypt_embediv(key, block)
    try:
        return parse_environment(lenient.inflate(compressed, MAX_ENVIRONMENT_SIZE))
    except (ValueError, TypedEnvelopeError):
        raise DecryptionError() from None


def encrypt_key_block(crypto_key: bytes, environment: dict[str, str], *, iv: bytes | None = None) -> bytes:
    """Encrypt a client environment under the CryptoKey (``iv`` only to reproduce vectors)."""
    return _seal(crypto_key, environment, iv)


def decrypt_key_block(crypto_key: bytes, block: bytes) -> dict[str, str]:
    """Decrypt a key block into its environment; any failure is DecryptionError."""
    return _open(crypto_key, bytes(block))


def mail_block_key(server_password: str) -> bytes:
    """The AES key of mail blocks: PBKDF2 of the server password, desktop-Java bytes, salt 0."""
    return pbkdf.crypto_key(server_password, variant="java-desktop")


def encrypt_mail_block(server_password: str, environment: dict[str, str], *, iv: bytes | None = None) -> str:
    """Encrypt a server environment for the ``mail_block`` column (base64 text)."""
    return base64.b64encode(_seal(mail_block_key(server_password), environment, iv)).decode("ascii")


def decrypt_mail_block(server_password: str, block_b64: str) -> dict[str, str]:
    """Decrypt a ``mail_block`` value; any failure is DecryptionError."""
    return decrypt_mail_block_with_key(mail_block_key(server_password), block_b64)


def decrypt_mail_block_with_key(key: bytes, block_b64: str) -> dict[str, str]:
    """Like :func:`decrypt_mail_block` with the derived key (derive once, read many)."""
    if len(block_b64) > MAX_BLOCK_SIZE * 4 // 3 + 4:
        raise DecryptionError()
    try:
        block = base64.b64decode(block_b64, validate=True)
    except (binascii.Error, ValueError):
        raise DecryptionError() from None
    return _open(key, block)
