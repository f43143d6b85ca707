"""Chunked AES-256-GCM: a stream sealed chunk by chunk under a caller-given key, nonce prefix and header.

Chunk ``i`` is ``AES-256-GCM(key, nonce = nonce_prefix || u32(i) || final, plaintext, aad = header)``,
that is its ciphertext followed by the 16-byte tag; ``final`` is 0x01 on the last chunk and 0x00 on
the others.  Every chunk but the last holds exactly ``chunk_size`` plaintext bytes; the last holds
1..``chunk_size`` (0 only when the whole stream is empty).  Because the index and the final flag
are in the nonce and the header is in every tag, reordered, dropped, truncated or appended chunks
and a changed header all fail authentication.

How chunks are framed on the wire (fixed size, or a length before each) and how the key is made
belong to the format using this: the v2 envelope (:mod:`mailiverse.crypto.envelope`) and the
appliance backup (:mod:`mailiverse.admin.backup_archive`).
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mailiverse.crypto.errors import CryptoError, DecryptionError

KEY_SIZE = 32
NONCE_PREFIX_SIZE = 7
TAG_SIZE = 16
#: The index is a u32 in the nonce: no stream has more chunks than this.
MAX_CHUNKS = 2**32


def chunk_nonce(prefix: bytes, index: int, final: bool) -> bytes:
    """The 12-byte nonce of chunk ``index``: the prefix, the index and the final flag."""
    return prefix + index.to_bytes(4, "big") + (b"\x01" if final else b"\x00")


def _aead(key: bytes, nonce_prefix: bytes) -> AESGCM:
    if len(key) != KEY_SIZE:
        raise CryptoError(f"the stream key must be {KEY_SIZE} bytes")
    if len(nonce_prefix) != NONCE_PREFIX_SIZE:
        raise CryptoError(f"the nonce prefix must be {NONCE_PREFIX_SIZE} bytes")
    return AESGCM(key)


class ChunkSealer:
    """Seals a stream given in pieces of any size into chunks of ``chunk_size`` plaintext bytes.

    A full chunk is held back until more data or :meth:`finalize` shows whether it is the
    last one, so memory stays at about one chunk.
    """

    def __init__(self, key: bytes, nonce_prefix: bytes, header: bytes, chunk_size: int) -> None:
        if chunk_size < 1:
            raise CryptoError("chunk_size must be at least 1")
        self._aead = _aead(key, nonce_prefix)
        self._prefix = nonce_prefix
        self._header = header
        self._chunk_size = chunk_size
        self._pending = bytearray()
        self._index = 0
        self._done = False

    def _seal(self, plaintext: bytes, final: bool) -> bytes:
        if self._index >= MAX_CHUNKS:
            raise CryptoError("message too long for this chunk size")
        sealed = self._aead.encrypt(chunk_nonce(self._prefix, self._index, final), plaintext, self._header)
        self._index += 1
        return sealed

    def update(self, data: bytes) -> list[bytes]:
        """Take more plaintext; return the chunks now known not to be the last, each sealed."""
        if self._done:
            raise CryptoError("encryptor already finalized")
        self._pending += data
        size = self._chunk_size
        # Keep at least one byte back: only then is every emitted chunk known not to be last.
        whole = (len(self._pending) - 1) // size if self._pending else 0
        sealed = [self._seal(bytes(self._pending[i * size : (i + 1) * size]), False) for i in range(whole)]
        del self._pending[: whole * size]
        return sealed

    def finalize(self) -> bytes:
        """Seal what is held back as the last chunk (possibly empty); the stream is complete after this."""
        if self._done:
            raise CryptoError("encryptor already finalized")
        self._done = True
        last = self._seal(bytes(self._pending), True)
        self._pending = bytearray()
        return last


class ChunkOpener:
    """Opens the chunks of one stream in order; any failure is the one generic :class:`DecryptionError`.

    A failed chunk leaves the position unchanged, so a framing that does not say which chunk is
    the last can try both (:meth:`open_either`).  The stream is only complete once the last chunk
    opened (:attr:`finished`); before that, the caller must treat everything released as unproven.
    """

    def __init__(self, key: bytes, nonce_prefix: bytes, header: bytes) -> None:
        self._aead = _aead(key, nonce_prefix)
        self._prefix = nonce_prefix
        self._header = header
        self._index = 0
        self.finished = False

    def open(self, sealed: bytes, final: bool) -> bytes:
        """The plaintext of the next chunk, which the caller knows is (or is not) the last."""
        if self.finished or self._index >= MAX_CHUNKS:
            raise DecryptionError()
        try:
            plaintext = self._aead.decrypt(chunk_nonce(self._prefix, self._index, final), sealed, self._header)
        except InvalidTag:
            raise DecryptionError() from None
        self._index += 1
        self.finished = final
        return plaintext

    def open_either(self, sealed: bytes) -> bytes:
        """The plaintext of the next chunk, whether or not it is the last (see :attr:`finished`)."""
        try:
            return self.open(sealed, final=False)
        except DecryptionError:
            return self.open(sealed, final=True)
