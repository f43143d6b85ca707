"""Cache-file keys and blobs (docs/formats.md §7.4): ``key = SHA-256(utf8(name) || private key bytes)``.

The seed is the user's RSA private key exactly as stored (PKCS#8 DER, even when it is
non-minimal DER), and the name is the relative cache name (``I``, ``M_<hex>``, ...).  The file
at ``Cache/<name>`` is AES-CBC-256-EmbedIV under that key.
"""

from __future__ import annotations

import hashlib

from mailiverse.crypto import aes
from mailiverse.crypto.errors import CryptoError

MAX_NAME_LENGTH = 256


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name or len(name) > MAX_NAME_LENGTH:
        raise CryptoError(f"cache name must be 1..{MAX_NAME_LENGTH} characters")
    if "/" in name or any(ord(c) < 0x21 or ord(c) > 0x7E for c in name):
        raise CryptoError("cache name must be a relative name of printable ASCII")


def cache_key(name: str, private_key_der: bytes) -> bytes:
    """The 32-byte AES key of cache file ``name`` for the given stored private key bytes."""
    _check_name(name)
    if not private_key_der:
        raise CryptoError("the private key bytes are required")
    return hashlib.sha256(name.encode("ascii") + bytes(private_key_der)).digest()


def encrypt_cache_file(name: str, private_key_der: bytes, plaintext: bytes, *, iv: bytes | None = None) -> bytes:
    """Encrypt a cache file body (``iv`` only to reproduce vectors)."""
    return aes.encrypt_embediv(cache_key(name, private_key_der), plaintext, iv)


def decrypt_cache_file(name: str, private_key_der: bytes, blob: bytes) -> bytes:
    """Decrypt a cache file body; any failure is DecryptionError."""
    return aes.decrypt_embediv(cache_key(name, private_key_der), blob)
