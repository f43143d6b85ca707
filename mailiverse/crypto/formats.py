"""Choosing and telling apart the mail-at-rest formats: v1 (Mailiverse RSA-AES) and v2 (envelope).

A stored ``Mail/In/...`` object is ``encrypt(zlib(bytes))``; the first byte of the
ciphertext says which format it is (0x00/0x01 legacy RSA-AES, 0x02 envelope).
"""

from __future__ import annotations

from typing import Protocol

from cryptography.hazmat.primitives.asymmetric import rsa

from mailiverse.crypto import envelope, lenient, rsaaes
from mailiverse.crypto.errors import CryptoError, DecryptionError

FORMAT_V1 = "v1"
FORMAT_V2 = "v2"
FORMATS = (FORMAT_V1, FORMAT_V2)


class StreamEncryptor(Protocol):
    """What :func:`stream_encryptor` returns: push bytes in, ciphertext comes out."""

    def update(self, data: bytes) -> bytes: ...

    def finalize(self) -> bytes: ...


def stream_encryptor(fmt: str, public_key: rsa.RSAPublicKey) -> StreamEncryptor:
    """An incremental encryptor for ``fmt`` (``"v1"`` or ``"v2"``)."""
    if fmt == FORMAT_V1:
        return rsaaes.V1StreamEncryptor(public_key)
    if fmt == FORMAT_V2:
        return envelope.SealEncryptor(public_key)
    raise CryptoError(f"unknown format {fmt!r}; use one of {FORMATS}")


def format_of(blob: bytes) -> str:
    """Which format a ciphertext is in, from its first byte; unknown raises DecryptionError."""
    if blob[:1] in (b"\x00", b"\x01"):
        return FORMAT_V1
    if blob[:1] == b"\x02":
        return FORMAT_V2
    raise DecryptionError()


def decrypt_any(private_key: rsa.RSAPrivateKey, blob: bytes) -> bytes:
    """Decrypt a v0/v1 RSA-AES blob or a v2 envelope, chosen by the first byte."""
    if format_of(blob) == FORMAT_V1:
        return rsaaes.decrypt(private_key, blob)
    return envelope.open_sealed(private_key, blob)


def open_mail_object(
    private_key: rsa.RSAPrivateKey,
    blob: bytes,
    max_size: int | None = lenient.DEFAULT_MAX_INFLATED,
) -> bytes:
    """Decrypt then leniently inflate a stored mail object; any failure is DecryptionError."""
    compressed = decrypt_any(private_key, blob)
    try:
        return lenient.inflate(compressed, max_size)
    except ValueError:
        # v1 has no MAC: a wrong key can yield garbage that only fails here.
        raise DecryptionError() from None


def seal_mail_object(fmt: str, public_key: rsa.RSAPublicKey, data: bytes) -> bytes:
    """Compress then encrypt ``data`` as a stored mail object in format ``fmt``."""
    enc = stream_encryptor(fmt, public_key)
    return enc.update(lenient.deflate(data)) + enc.finalize()
