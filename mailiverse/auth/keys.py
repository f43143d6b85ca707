"""Derive independent purpose-bound keys from the one server secret used by the auth layer."""

from __future__ import annotations

import hashlib
import hmac

#: The server secret must carry at least this many bytes of entropy.
MIN_SERVER_SECRET_BYTES = 32


def check_server_secret(secret: bytes) -> bytes:
    """Return ``secret`` unchanged if it is usable, else raise ``ValueError`` naming the fix."""
    if not isinstance(secret, bytes) or len(secret) < MIN_SERVER_SECRET_BYTES:
        raise ValueError(
            f"the auth server secret must be at least {MIN_SERVER_SECRET_BYTES} random bytes "
            "(generate it once with os.urandom and keep it in the data directory)"
        )
    return secret


def subkey(secret: bytes, label: str) -> bytes:
    """Return a 32-byte key for one purpose, so no two features ever share key material."""
    check_server_secret(secret)
    return hmac.new(secret, b"mailiverse auth subkey\x00" + label.encode("ascii"), hashlib.sha256).digest()
