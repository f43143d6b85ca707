"""AES-CBC-256-EmbedIV (docs/formats.md §2): ``IV || AES-256-CBC(key, IV, PKCS#7(plaintext))``.

Decryption checks every padding byte, as the original Java (BouncyCastle) reader does,
and reports every failure as the one generic :class:`DecryptionError`.  The streaming
classes keep memory bounded: they hold back at most one block.
"""

from __future__ import annotations

import hmac
import os

from cryptography.hazmat.primitives.ciphers import (
    Cipher,
    CipherContext,
    algorithms,
    modes,
)

from mailiverse.crypto.errors import CryptoError, DecryptionError

KEY_SIZE = 32
IV_SIZE = 16
BLOCK_SIZE = 16


def _check_key(key: bytes) -> None:
    if not isinstance(key, (bytes, bytearray)) or len(key) != KEY_SIZE:
        raise CryptoError("AES-256 key must be 32 bytes")


def _check_iv(iv: bytes) -> None:
    if not isinstance(iv, (bytes, bytearray)) or len(iv) != IV_SIZE:
        raise CryptoError("AES-CBC IV must be 16 bytes")


def _pad(data: bytes) -> bytes:
    n = BLOCK_SIZE - len(data) % BLOCK_SIZE
    return data + bytes([n]) * n


def _unpad_block(block: bytes) -> tuple[bytes, bool]:
    """Strip PKCS#7 padding from the last block; return (plaintext part, padding ok).

    The comparison runs over all 16 bytes whatever the pad length, so its time does
    not depend on where the padding goes wrong.
    """
    n = block[-1]
    n_ok = 1 <= n <= BLOCK_SIZE
    effective = n if n_ok else BLOCK_SIZE
    expected = block[: BLOCK_SIZE - effective] + bytes([n]) * effective
    same = hmac.compare_digest(expected, block)
    return block[: BLOCK_SIZE - effective], bool(n_ok and same)


class CbcEncryptor:
    """Incremental EmbedIV encryption; the first output begins with the IV."""

    def __init__(self, key: bytes, iv: bytes | None = None) -> None:
        _check_key(key)
        self._iv = os.urandom(IV_SIZE) if iv is None else bytes(iv)
        _check_iv(self._iv)
        self._ctx = Cipher(algorithms.AES(bytes(key)), modes.CBC(self._iv)).encryptor()
        self._pending = b""
        self._iv_sent = False
        self._done = False

    def _prefix(self) -> bytes:
        if self._iv_sent:
            return b""
        self._iv_sent = True
        return self._iv

    def update(self, data: bytes) -> bytes:
        if self._done:
            raise CryptoError("encryptor already finalized")
        view = memoryview(self._pending + bytes(data) if self._pending else data)
        cut = len(view) - len(view) % BLOCK_SIZE
        self._pending = bytes(view[cut:])
        return self._prefix() + (self._ctx.update(view[:cut]) if cut else b"")

    def finalize(self) -> bytes:
        if self._done:
            raise CryptoError("encryptor already finalized")
        self._done = True
        out = self._prefix() + self._ctx.update(_pad(self._pending)) + self._ctx.finalize()
        self._pending = b""
        return out


class CbcDecryptor:
    """Incremental EmbedIV decryption: IV from the first 16 bytes, padding checked at finalize.

    Output released by :meth:`update` is unauthenticated (the format has no MAC);
    callers must discard it if :meth:`finalize` raises.
    """

    def __init__(self, key: bytes) -> None:
        _check_key(key)
        self._key = bytes(key)
        self._head = b""
        self._ctx: CipherContext | None = None
        self._held = b""  # decrypted bytes not yet released (the last block)
        self._ct_len = 0
        self._done = False

    def update(self, data: bytes) -> bytes:
        if self._done:
            raise CryptoError("decryptor already finalized")
        data = bytes(data)
        if self._ctx is None:
            self._head += data
            if len(self._head) < IV_SIZE:
                return b""
            iv, data = self._head[:IV_SIZE], self._head[IV_SIZE:]
            self._head = b""
            self._ctx = Cipher(algorithms.AES(self._key), modes.CBC(iv)).decryptor()
        self._ct_len += len(data)
        plain = self._ctx.update(data)
        if len(plain) < BLOCK_SIZE:
            buf = self._held + plain
            keep = min(len(buf), BLOCK_SIZE)
            self._held = buf[len(buf) - keep :]
            return buf[: len(buf) - keep]
        # Release everything but the newest block, which may hold the padding.
        out = self._held + plain[:-BLOCK_SIZE]
        self._held = plain[-BLOCK_SIZE:]
        return out

    def finalize(self) -> bytes:
        if self._done:
            raise CryptoError("decryptor already finalized")
        self._done = True
        if self._ctx is None or self._ct_len == 0 or self._ct_len % BLOCK_SIZE:
            raise DecryptionError()
        try:
            buf = self._held + self._ctx.finalize()
        except ValueError:
            raise DecryptionError() from None
        self._held = b""
        if len(buf) != BLOCK_SIZE:
            raise DecryptionError()
        out, ok = _unpad_block(buf)
        if not ok:
            raise DecryptionError()
        return out


def encrypt_embediv(key: bytes, plaintext: bytes, iv: bytes | None = None) -> bytes:
    """Return ``IV || AES-256-CBC(key, IV, PKCS#7(plaintext))`` with a fresh IV unless given."""
    enc = CbcEncryptor(key, iv)
    return enc.update(plaintext) + enc.finalize()


def decrypt_embediv(key: bytes, blob: bytes) -> bytes:
    """Decrypt an EmbedIV blob; any malformation raises :class:`DecryptionError`."""
    _check_key(key)
    blob = bytes(blob)
    if len(blob) < IV_SIZE + BLOCK_SIZE or (len(blob) - IV_SIZE) % BLOCK_SIZE:
        raise DecryptionError()
    dec = CbcDecryptor(key)
    return dec.update(blob) + dec.finalize()
