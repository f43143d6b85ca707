"""The legacy protocol's own RSA key pairs, generated once on the first start with ``--legacy``.

``mail-auth`` decrypts legacy sign-up packets and ``send`` the legacy relay
blobs (docs/protocol.md §1.4); both are ordinary RSA-2048 keys kept as PKCS#8 PEM,
mode 0600, in ``<data-dir>/keys``.  No user's private key is ever here.
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailiverse.config import DataDir
from mailiverse.privatefile import create_private_once

SERVER_KEY_PURPOSES = ("mail-auth", "send")


def _new_key_pem(bits: int) -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def ensure_server_keys(data_dir: DataDir, bits: int = 2048) -> dict[str, Path]:
    """Create any missing server key pair; return the path of each by purpose."""
    paths = {}
    for purpose in SERVER_KEY_PURPOSES:
        path = data_dir.server_key_path(purpose)
        if not path.exists():
            # Two front ends starting together on one data dir keep the same key.
            create_private_once(path, lambda: _new_key_pem(bits))
        paths[purpose] = path
    return paths


def load_server_key(data_dir: DataDir, purpose: str) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(data_dir.server_key_path(purpose).read_bytes(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"server key {purpose} is not an RSA key")
    return key
