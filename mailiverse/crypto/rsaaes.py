"""RSA-AES-CBC-256-EmbedIV, the original's hybrid format (docs/formats.md §4).

Version 1: ``0x01 || u32be(len W) || W || IV || AES-256-CBC(K, IV, PKCS#7(plaintext))`` with
W = RSAES-PKCS1-v1_5(public key, K) and K a fresh 32-byte key.  Version 0 (decrypt only):
``0x00 || 3 ignored bytes || u32be(len W) || W || AES-256-CBC(K, zero IV, ...)``.

We always write W at full modulus length and read short W (the web client drops leading
zero bytes) by left-padding it.  PKCS#1 v1.5 unpadding must not become an oracle: when it
fails we carry on with a random key, run the AES layer exactly as for a good key, and only
then raise the one generic :class:`DecryptionError`.  The format has no MAC, so a stream
decryptor's output is unauthenticated until ``finalize`` returns.
"""

from __future__ import annotations

import os

from cryptography.hazmat.primitives.asymmetric import padding, rsa

from mailiverse.crypto.aes import IV_SIZE, KEY_SIZE, CbcDecryptor, CbcEncryptor
from mailiverse.crypto.errors import CryptoError, DecryptionError

VERSION_0 = 0x00
VERSION_1 = 0x01
_ZERO_IV = bytes(IV_SIZE)


def _wrap_key(public_key: rsa.RSAPublicKey, aes_key: bytes) -> bytes:
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise CryptoError("an RSA public key is required")
    return public_key.encrypt(aes_key, padding.PKCS1v15())


def _unwrap_key(private_key: rsa.RSAPrivateKey, wrapped: bytes) -> tuple[bytes, bool]:
    """Return (K, ok).  On any failure K is random and ok is False; never raises."""
    size = (private_key.key_size + 7) // 8
    block = bytes(size - len(wrapped)) + wrapped
    fallback = os.urandom(KEY_SIZE)
    try:
        key = private_key.decrypt(block, padding.PKCS1v15())
    except ValueError:
        return fallback, False
    if len(key) != KEY_SIZE:
        return fallback, False
    return key, True


def _header(wrapped: bytes) -> bytes:
    return bytes([VERSION_1]) + len(wrapped).to_bytes(4, "big") + wrapped


def encrypt_v1(
    public_key: rsa.RSAPublicKey,
    plaintext: bytes,
    *,
    aes_key: bytes | None = None,
    iv: bytes | None = None,
) -> bytes:
    """Encrypt to the version-1 layout; ``aes_key``/``iv`` are for reproducing vectors only."""
    enc = V1StreamEncryptor(public_key, aes_key=aes_key, iv=iv)
    return enc.update(plaintext) + enc.finalize()


def decrypt(private_key: rsa.RSAPrivateKey, blob: bytes) -> bytes:
    """Decrypt a version 0 or 1 blob; every failure is the same :class:`DecryptionError`."""
    dec = V1StreamDecryptor(private_key)
    return dec.update(blob) + dec.finalize()


class V1StreamEncryptor:
    """Incremental version-1 encryption; the first output carries the header and W."""

    def __init__(
        self,
        public_key: rsa.RSAPublicKey,
        *,
        aes_key: bytes | None = None,
        iv: bytes | None = None,
    ) -> None:
        key = os.urandom(KEY_SIZE) if aes_key is None else bytes(aes_key)
        if len(key) != KEY_SIZE:
            raise CryptoError("the AES key must be 32 bytes")
        self._pending_header = _header(_wrap_key(public_key, key))
        self._cbc = CbcEncryptor(key, iv)

    def _take_header(self) -> bytes:
        head, self._pending_header = self._pending_header, b""
        return head

    def update(self, data: bytes) -> bytes:
        return self._take_header() + self._cbc.update(data)

    def finalize(self) -> bytes:
        return self._take_header() + self._cbc.finalize()


class V1StreamDecryptor:
    """Incremental decryption of version 0 and 1 blobs.

    Plaintext from :meth:`update` is unauthenticated (the format has none); the caller
    must discard everything it received if :meth:`finalize` raises.
    """

    def __init__(self, private_key: rsa.RSAPrivateKey) -> None:
        if not isinstance(private_key, rsa.RSAPrivateKey):
            raise CryptoError("an RSA private key is required")
        self._key = private_key
        self._modulus_size = (private_key.key_size + 7) // 8
        self._buf = b""
        self._cbc: CbcDecryptor | None = None
        self._ok = True
        self._failed = False
        self._done = False

    def _fail(self) -> None:
        self._failed = True
        self._buf = b""

    def _start(self) -> bytes:
        """Parse the header once enough bytes are buffered; return leftover body bytes."""
        buf = self._buf
        if not buf:
            return b""
        version = buf[0]
        if version == VERSION_1:
            len_at = 1
        elif version == VERSION_0:
            len_at = 4
        else:
            self._fail()
            return b""
        if len(buf) < len_at + 4:
            return b""
        w_len = int.from_bytes(buf[len_at : len_at + 4], "big")
        if not 1 <= w_len <= self._modulus_size:
            self._fail()
            return b""
        w_end = len_at + 4 + w_len
        if len(buf) < w_end:
            return b""
        aes_key, self._ok = _unwrap_key(self._key, buf[len_at + 4 : w_end])
        self._cbc = CbcDecryptor(aes_key)
        self._buf = b""
        body = buf[w_end:]
        if version == VERSION_0:
            body = _ZERO_IV + body
        return body

    def update(self, data: bytes) -> bytes:
        if self._done:
            raise CryptoError("decryptor already finalized")
        if self._failed:
            return b""
        if self._cbc is None:
            self._buf += bytes(data)
            body = self._start()
            if self._cbc is None:
                return b""
            data = body
        return self._cbc.update(data)

    def finalize(self) -> bytes:
        if self._done:
            raise CryptoError("decryptor already finalized")
        self._done = True
        if self._failed or self._cbc is None:
            raise DecryptionError()
        try:
            tail = self._cbc.finalize()
        except DecryptionError:
            raise DecryptionError() from None
        if not self._ok:
            raise DecryptionError()
        return tail
