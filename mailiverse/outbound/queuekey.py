"""The symmetric key that encrypts queued message bodies at rest, and the sealing format.

The key is 32 random bytes in ``<data-dir>/keys/queue.key`` (mode 0600), made on first use.
A sealed body is ``b"MVQ1" || key id (8) || nonce (12) || AES-256-GCM ciphertext and tag``,
with the message's queue id as associated data, so a body cannot be moved to another row.
Front ends that share one PostgreSQL database must share this file too.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import stat
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mailiverse.outbound.errors import QueuedBodyUnreadable, QueueKeyError
from mailiverse.privatefile import create_private, private_dir

QUEUE_KEY_NAME = "queue.key"
KEY_BYTES = 32
_MAGIC = b"MVQ1"
_KEY_ID_BYTES = 8
_NONCE_BYTES = 12
_AAD_PREFIX = b"mailiverse outbound queue body\x00"


def queue_key_path(keys_dir: Path) -> Path:
    """Where the queue key lives in a data directory's ``keys`` folder."""
    return Path(keys_dir) / QUEUE_KEY_NAME


def load_or_create_queue_key(keys_dir: Path) -> bytes:
    """Read the queue key, creating it (0600, atomically, race-free) when absent."""
    path = queue_key_path(private_dir(Path(keys_dir)))
    if not path.exists():
        # If another process created the key first, theirs wins and is read below.
        with contextlib.suppress(FileExistsError):
            create_private(path, secrets.token_bytes(KEY_BYTES))
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as error:
        raise QueueKeyError(f"cannot read the queue key {path}: {error.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise QueueKeyError(f"the queue key {path} is not a regular file")
        key = os.read(fd, KEY_BYTES + 1)
    finally:
        os.close(fd)
    if len(key) != KEY_BYTES:
        raise QueueKeyError(
            f"the queue key {path} is not {KEY_BYTES} bytes; restore it or remove it with an empty queue"
        )
    return key


class QueueCipher:
    """Seals and opens queued bodies with one queue key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError("the queue key must be 32 bytes")
        self._aead = AESGCM(key)
        self._key_id = hashlib.sha256(b"mailiverse queue key id\x00" + key).digest()[:_KEY_ID_BYTES]

    def seal(self, queue_id: str, body: bytes) -> bytes:
        """Encrypt ``body`` bound to ``queue_id``."""
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, body, _AAD_PREFIX + queue_id.encode("ascii"))
        return _MAGIC + self._key_id + nonce + sealed

    def open(self, queue_id: str, blob: bytes) -> bytes:
        """Decrypt a sealed body; any problem raises the one generic ``QueuedBodyUnreadable``."""
        header = len(_MAGIC) + _KEY_ID_BYTES + _NONCE_BYTES
        if len(blob) < header + 16 or blob[: len(_MAGIC)] != _MAGIC:
            raise QueuedBodyUnreadable("the queued message cannot be decrypted")
        nonce = blob[len(_MAGIC) + _KEY_ID_BYTES : header]
        try:
            return self._aead.decrypt(nonce, blob[header:], _AAD_PREFIX + queue_id.encode("ascii"))
        except (InvalidTag, ValueError):
            raise QueuedBodyUnreadable("the queued message cannot be decrypted") from None
