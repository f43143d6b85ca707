"""Decrypt stored mail from the format descriptions alone, sharing no code with mailiverse.

docs/formats.md §4 (RSA-AES-CBC-256-EmbedIV v1) and §12 (the
authenticated v2 envelope), written directly against ``cryptography`` so a
bug in the code under test cannot hide itself.
"""

from __future__ import annotations

import struct
import zlib

from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.asymmetric import padding as asym
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def decrypt_v1(key: RSAPrivateKey, blob: bytes) -> bytes:
    assert blob[0] == 1, "not a version 1 blob"
    (length,) = struct.unpack(">I", blob[1:5])
    wrapped = blob[5 : 5 + length].rjust(key.key_size // 8, b"\0")
    aes_key = key.decrypt(wrapped, asym.PKCS1v15())
    rest = blob[5 + length :]
    iv, body = rest[:16], rest[16:]
    decryptor = Cipher(algorithms.AES(aes_key), modes.CBC(iv)).decryptor()
    padded = decryptor.update(body) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    return unpadder.update(padded) + unpadder.finalize()


def decrypt_v2(key: RSAPrivateKey, blob: bytes) -> bytes:
    assert blob[0] == 2, "not a version 2 blob"
    (wlen,) = struct.unpack(">H", blob[1:3])
    wrapped = blob[3 : 3 + wlen]
    pos = 3 + wlen
    (chunk_size,) = struct.unpack(">I", blob[pos : pos + 4])
    prefix = blob[pos + 4 : pos + 11]
    header = blob[: pos + 11]
    content_key = key.decrypt(wrapped, asym.OAEP(mgf=asym.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None))
    aead = AESGCM(content_key)
    out = []
    rest = blob[pos + 11 :]
    index = 0
    while True:
        final = len(rest) <= chunk_size + 16
        piece, rest = (rest, b"") if final else (rest[: chunk_size + 16], rest[chunk_size + 16 :])
        nonce = prefix + struct.pack(">I", index) + (b"\x01" if final else b"\x00")
        out.append(aead.decrypt(nonce, piece, header))
        index += 1
        if final:
            return b"".join(out)


def open_mail(key: RSAPrivateKey, blob: bytes) -> bytes:
    """Decrypt by version byte, then inflate raw (skipping zlib's header and trailer)."""
    plain = decrypt_v1(key, blob) if blob[0] == 1 else decrypt_v2(key, blob)
    return zlib.decompressobj(-15).decompress(plain[2:-4])
