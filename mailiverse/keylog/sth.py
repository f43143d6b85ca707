"""Signed tree heads: the log's Ed25519 signature over its size, root and time, and their JSON form.

The signed bytes (``canonical``) are fixed-length and unambiguous, 66 bytes in all::

    b"mailiverse-sth-v1\\n"        18 bytes, ASCII: names the format, so the signature cannot pass for another
    tree_size                      8 bytes, unsigned big-endian
    timestamp                      8 bytes, unsigned big-endian, milliseconds since the Unix epoch (UTC)
    root_hash                      32 bytes, the RFC 9162 MTH of the first tree_size leaves

The signature is plain Ed25519 (RFC 8032) over those bytes with the appliance's log key. In JSON a head is
``{"tree_size": int, "root_hash": base64, "timestamp": int, "signature": base64}`` (standard base64 with
padding); ``from_json`` refuses anything else with ``ValueError`` and ignores fields it does not know, so
later versions may add some. docs/transparency.md ("Signed tree head") is the outside verifier's copy of this.
"""

from __future__ import annotations

import base64
import binascii
import struct
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from mailiverse.keylog.merkle import HASH_SIZE

STH_PREFIX = b"mailiverse-sth-v1\n"
"""The first bytes of every signed tree head: the format and its version."""

SIGNATURE_SIZE = 64
"""Ed25519 signatures are 64 bytes."""

_MAX_UINT64 = 2**64 - 1
# A JSON head is a few hundred characters; anything far longer is refused before it is decoded.
_MAX_BASE64_CHARS = 256


@dataclass(frozen=True)
class TreeHead:
    """The log's state at one moment: how many leaves, their Merkle root, and when (milliseconds, UTC)."""

    tree_size: int
    root_hash: bytes
    timestamp: int

    def __post_init__(self) -> None:
        _check_uint64(self.tree_size, "tree_size")
        _check_uint64(self.timestamp, "timestamp")
        if not isinstance(self.root_hash, bytes) or len(self.root_hash) != HASH_SIZE:
            raise ValueError(f"root_hash must be {HASH_SIZE} bytes")


def canonical(head: TreeHead) -> bytes:
    """The exact bytes the log key signs for ``head`` (the module docstring gives the layout)."""
    return STH_PREFIX + struct.pack(">QQ", head.tree_size, head.timestamp) + head.root_hash


def sign(head: TreeHead, private_key: Ed25519PrivateKey) -> bytes:
    """The log key's Ed25519 signature over ``canonical(head)``."""
    return private_key.sign(canonical(head))


def verify(head: TreeHead, signature: bytes, public_key: Ed25519PublicKey) -> bool:
    """Whether ``signature`` is the log key's signature over ``head``; never raises on a malformed signature."""
    if not isinstance(signature, bytes) or len(signature) != SIGNATURE_SIZE:
        return False
    try:
        public_key.verify(signature, canonical(head))
    except InvalidSignature:
        return False
    return True


def to_json(head: TreeHead, signature: bytes) -> dict[str, object]:
    """The head and its signature as the API serves them."""
    return {
        "tree_size": head.tree_size,
        "root_hash": base64.b64encode(head.root_hash).decode("ascii"),
        "timestamp": head.timestamp,
        "signature": base64.b64encode(signature).decode("ascii"),
    }


def from_json(value: object) -> tuple[TreeHead, bytes]:
    """The head and signature in a JSON object from ``to_json``; ``ValueError`` naming the first bad field.

    Checks only the form; whether the signature is right is ``verify``'s job.
    """
    if not isinstance(value, Mapping):
        raise ValueError("a signed tree head must be a JSON object")
    head = TreeHead(
        tree_size=_field_uint64(value, "tree_size"),
        root_hash=_field_base64(value, "root_hash", HASH_SIZE),
        timestamp=_field_uint64(value, "timestamp"),
    )
    return head, _field_base64(value, "signature", SIGNATURE_SIZE)


def _check_uint64(value: object, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{name} must be an integer")
    if not 0 <= value <= _MAX_UINT64:
        raise ValueError(f"{name} must be between 0 and 2**64 - 1")
    return value


def _field_uint64(value: Mapping[object, object], name: str) -> int:
    if name not in value:
        raise ValueError(f"{name} is missing")
    return _check_uint64(value[name], name)


def _field_base64(value: Mapping[object, object], name: str, size: int) -> bytes:
    if name not in value:
        raise ValueError(f"{name} is missing")
    field = value[name]
    if not isinstance(field, str):
        raise ValueError(f"{name} must be a base64 string")
    if len(field) > _MAX_BASE64_CHARS or not field.isascii():
        raise ValueError(f"{name} is not the base64 of {size} bytes")
    try:
        decoded = base64.b64decode(field, validate=True)
    except binascii.Error:
        raise ValueError(f"{name} is not valid base64") from None
    # One encoding per value: no stray bits in the padding, so equal heads have equal JSON.
    if len(decoded) != size or base64.b64encode(decoded).decode("ascii") != field:
        raise ValueError(f"{name} is not the base64 of {size} bytes")
    return decoded
