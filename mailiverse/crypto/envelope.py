"""The authenticated envelope ("v2") used for new accounts: RSA-OAEP-SHA256 + chunked AES-256-GCM.

Layout (all integers big-endian)::

    header = 0x02 || u16(len W) || W || u32(chunk_size) || nonce_prefix (7 random bytes)
    W      = RSA-OAEP(SHA-256, MGF1-SHA-256, no label) of a fresh 32-byte content key CK
    chunk i = AES-256-GCM(CK, nonce = nonce_prefix || u32(i) || final, chunk plaintext,
                          aad = header) = ciphertext || 16-byte tag
    blob   = header || chunk 0 || chunk 1 || ... || final chunk

Every chunk holds exactly ``chunk_size`` plaintext bytes except the last, which holds
1..chunk_size bytes (or 0 when the whole plaintext is empty: a single empty final chunk).
``final`` is 0x01 for the last chunk and 0x00 for the others.  Binding the index and the
final flag into the nonce and the whole header into every tag makes reordering, dropping,
truncating at a chunk boundary, appending and header tampering all fail authentication.
``W`` must be exactly the modulus length; ``chunk_size`` must be 1..16 MiB.  The chunks are the
chunked AES-256-GCM stream of :mod:`mailiverse.crypto.stream`, framed by size (no length fields).

Streaming decryption releases a chunk's plaintext only after its tag verified, but a stream
is only complete once the final chunk verified: callers of :func:`open_stream` and
:class:`SealDecryptor` must discard everything written if an error is raised.
Every failure raises the one generic :class:`DecryptionError`.
"""

from __future__ import annotations

import os
from typing import BinaryIO

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from mailiverse.crypto.errors import CryptoError, DecryptionError
from mailiverse.crypto.stream import KEY_SIZE, NONCE_PREFIX_SIZE, TAG_SIZE, ChunkOpener, ChunkSealer

VERSION = 0x02
DEFAULT_CHUNK_SIZE = 65536
MAX_CHUNK_SIZE = 16 * 1024 * 1024
_READ_SIZE = 256 * 1024


def _oaep() -> padding.OAEP:
    return padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def _check_chunk_size(chunk_size: int) -> None:
    if not isinstance(chunk_size, int) or not 1 <= chunk_size <= MAX_CHUNK_SIZE:
        raise CryptoError(f"chunk_size must be 1..{MAX_CHUNK_SIZE}")


class SealEncryptor:
    """Incremental sealing; the first output carries the header.

    A full chunk is held back until more data or :meth:`finalize` shows whether it is
    the last one, so memory stays at about one chunk.
    """

    def __init__(self, public_key: rsa.RSAPublicKey, chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        if not isinstance(public_key, rsa.RSAPublicKey):
            raise CryptoError("an RSA public key is required")
        _check_chunk_size(chunk_size)
        content_key = os.urandom(KEY_SIZE)
        wrapped = public_key.encrypt(content_key, _oaep())
        prefix = os.urandom(NONCE_PREFIX_SIZE)
        self._header = (
            bytes([VERSION]) + len(wrapped).to_bytes(2, "big") + wrapped + chunk_size.to_bytes(4, "big") + prefix
        )
        self._chunks = ChunkSealer(content_key, prefix, self._header, chunk_size)
        self._header_sent = False

    def _take_header(self) -> bytes:
        if self._header_sent:
            return b""
        self._header_sent = True
        return self._header

    def update(self, data: bytes) -> bytes:
        sealed = self._chunks.update(data)
        return b"".join([self._take_header(), *sealed])

    def finalize(self) -> bytes:
        last = self._chunks.finalize()
        return self._take_header() + last


class SealDecryptor:
    """Incremental opening of a v2 blob; each chunk's plaintext is released once its tag checks.

    The stream is only complete when :meth:`finalize` returns; on any error the caller
    must discard all output.
    """

    def __init__(self, private_key: rsa.RSAPrivateKey) -> None:
        if not isinstance(private_key, rsa.RSAPrivateKey):
            raise CryptoError("an RSA private key is required")
        self._key = private_key
        self._modulus_size = (private_key.key_size + 7) // 8
        self._buf = bytearray()
        self._chunks: ChunkOpener | None = None
        self._chunk_size = 0
        self._failed = False
        self._done = False

    def _fail(self) -> None:
        self._failed = True
        self._buf = bytearray()

    def _parse_header(self) -> None:
        buf = self._buf
        if buf[0] != VERSION:
            self._fail()
            return
        if len(buf) < 3:
            return
        w_len = int.from_bytes(buf[1:3], "big")
        if w_len != self._modulus_size:
            self._fail()
            return
        end = 3 + w_len + 4 + NONCE_PREFIX_SIZE
        if len(buf) < end:
            return
        chunk_size = int.from_bytes(buf[3 + w_len : 3 + w_len + 4], "big")
        if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
            self._fail()
            return
        try:
            content_key = self._key.decrypt(bytes(buf[3 : 3 + w_len]), _oaep())
        except ValueError:
            self._fail()
            return
        if len(content_key) != KEY_SIZE:
            self._fail()
            return
        header = bytes(buf[:end])
        self._chunk_size = chunk_size
        self._chunks = ChunkOpener(content_key, header[-NONCE_PREFIX_SIZE:], header)
        del self._buf[:end]

    def _open_chunk(self, data: bytes, final: bool) -> bytes:
        assert self._chunks is not None
        try:
            return self._chunks.open(data, final)
        except DecryptionError:
            self._fail()
            raise

    def update(self, data: bytes) -> bytes:
        if self._done:
            raise CryptoError("decryptor already finalized")
        if self._failed:
            raise DecryptionError()
        self._buf += data
        if self._chunks is None:
            if self._buf:
                self._parse_header()
            if self._failed:
                raise DecryptionError()
            if self._chunks is None:
                return b""
        step = self._chunk_size + TAG_SIZE
        # A full chunk followed by at least one more byte cannot be the final chunk.
        whole = (len(self._buf) - 1) // step if self._buf else 0
        out = [self._open_chunk(bytes(self._buf[i * step : (i + 1) * step]), False) for i in range(whole)]
        del self._buf[: whole * step]
        return b"".join(out)

    def finalize(self) -> bytes:
        if self._done:
            raise CryptoError("decryptor already finalized")
        self._done = True
        if self._failed or self._chunks is None or len(self._buf) < TAG_SIZE:
            raise DecryptionError()
        out = self._open_chunk(bytes(self._buf), True)
        self._buf = bytearray()
        return out


def seal(public_key: rsa.RSAPublicKey, plaintext: bytes, chunk_size: int = DEFAULT_CHUNK_SIZE) -> bytes:
    """Encrypt ``plaintext`` into one v2 blob."""
    enc = SealEncryptor(public_key, chunk_size)
    return enc.update(plaintext) + enc.finalize()


def open_sealed(private_key: rsa.RSAPrivateKey, blob: bytes) -> bytes:
    """Decrypt and authenticate a whole v2 blob."""
    dec = SealDecryptor(private_key)
    return dec.update(blob) + dec.finalize()


def seal_stream(
    public_key: rsa.RSAPublicKey,
    src: BinaryIO,
    dst: BinaryIO,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> int:
    """Seal everything read from ``src`` into ``dst``; return the number of bytes written."""
    enc = SealEncryptor(public_key, chunk_size)
    written = 0
    while True:
        data = src.read(_READ_SIZE)
        if not data:
            break
        out = enc.update(data)
        dst.write(out)
        written += len(out)
    out = enc.finalize()
    dst.write(out)
    written += len(out)
    return written


def open_stream(private_key: rsa.RSAPrivateKey, src: BinaryIO, dst: BinaryIO) -> int:
    """Open a v2 stream from ``src`` into ``dst``; return the plaintext bytes written.

    Authenticated plaintext is written chunk by chunk.  If this raises, the data already
    written to ``dst`` is a prefix that must be discarded: only a normal return means the
    whole message was authentic and complete.
    """
    dec = SealDecryptor(private_key)
    written = 0
    while True:
        data = src.read(_READ_SIZE)
        if not data:
            break
        out = dec.update(data)
        dst.write(out)
        written += len(out)
    out = dec.finalize()
    dst.write(out)
    written += len(out)
    return written
