"""RSA-AES-CBC-256-EmbedIV (v1, v0 read-only): layout, round trips and uniform rejection."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from mailiverse.crypto import aes, rsaaes
from mailiverse.crypto.errors import DecryptionError


@settings(max_examples=40, deadline=None)
@given(data=st.binary(max_size=3000), cut=st.integers(min_value=1, max_value=400))
def test_round_trip_and_streaming(private_key: rsa.RSAPrivateKey, data: bytes, cut: int) -> None:
    """v1 encryption decrypts one-shot and in pieces of any size to the same plaintext."""
    blob = rsaaes.encrypt_v1(private_key.public_key(), data)
    assert rsaaes.decrypt(private_key, blob) == data
    dec = rsaaes.V1StreamDecryptor(private_key)
    out = b"".join(dec.update(blob[i : i + cut]) for i in range(0, len(blob), cut)) + dec.finalize()
    assert out == data


def test_layout_is_full_length_w(private_key: rsa.RSAPrivateKey) -> None:
    """The blob is 0x01 || u32be(256) || W(256) || EmbedIV body, with the given key and IV."""
    key, iv = os.urandom(32), os.urandom(16)
    blob = rsaaes.encrypt_v1(private_key.public_key(), b"hello", aes_key=key, iv=iv)
    assert blob[0] == 1
    assert int.from_bytes(blob[1:5], "big") == 256
    assert private_key.decrypt(blob[5:261], padding.PKCS1v15()) == key
    assert blob[261:] == aes.encrypt_embediv(key, b"hello", iv)


def test_stream_encryptor_equals_one_shot_layout(
    private_key: rsa.RSAPrivateKey,
) -> None:
    """The streaming encryptor emits header and W first, then the same AES body."""
    key, iv = os.urandom(32), os.urandom(16)
    enc = rsaaes.V1StreamEncryptor(private_key.public_key(), aes_key=key, iv=iv)
    first = enc.update(b"ab")
    assert first[:5] == b"\x01\x00\x00\x01\x00" and len(first) == 5 + 256 + 16
    blob = first + enc.update(b"c" * 100) + enc.finalize()
    assert blob[261:] == aes.encrypt_embediv(key, b"ab" + b"c" * 100, iv)


def _v1(private_key: rsa.RSAPrivateKey, data: bytes = b"payload") -> bytes:
    return rsaaes.encrypt_v1(private_key.public_key(), data)


def test_wrong_key_rejected(private_key: rsa.RSAPrivateKey, other_key: rsa.RSAPrivateKey) -> None:
    """A blob for another key raises the generic error."""
    with pytest.raises(DecryptionError, match="^message could not be decrypted$"):
        rsaaes.decrypt(other_key, _v1(private_key))


@pytest.mark.parametrize("version", [2, 3, 0xFF])
def test_unknown_version_rejected(private_key: rsa.RSAPrivateKey, version: int) -> None:
    """Version bytes other than 0 and 1 are refused by the RSA-AES reader."""
    blob = bytearray(_v1(private_key))
    blob[0] = version
    with pytest.raises(DecryptionError):
        rsaaes.decrypt(private_key, bytes(blob))


@pytest.mark.parametrize("length", [0, 257, 300, 2**32 - 1])
def test_bad_length_field_rejected(private_key: rsa.RSAPrivateKey, length: int) -> None:
    """A zero, larger-than-modulus or larger-than-input W length is refused."""
    blob = bytearray(_v1(private_key))
    blob[1:5] = length.to_bytes(4, "big")
    with pytest.raises(DecryptionError):
        rsaaes.decrypt(private_key, bytes(blob))


@pytest.mark.parametrize("keep", [0, 1, 3, 5, 100, 261, 262, 276])
def test_truncation_rejected(private_key: rsa.RSAPrivateKey, keep: int) -> None:
    """A blob cut anywhere (header, W, IV or body) is refused."""
    blob = _v1(private_key, b"x" * 20)
    with pytest.raises(DecryptionError):
        rsaaes.decrypt(private_key, blob[:keep])


def test_tampered_w_gives_same_error(private_key: rsa.RSAPrivateKey) -> None:
    """A corrupted W (PKCS#1 unpad failure) yields the same error as bad AES padding."""
    blob = bytearray(_v1(private_key))
    blob[100] ^= 0x40
    with pytest.raises(DecryptionError) as rsa_failure:
        rsaaes.decrypt(private_key, bytes(blob))
    blob = bytearray(_v1(private_key))
    # b"payload" is one block padded with 0x09; turning that last byte into 0x00 through
    # the IV (CBC: P = D(C) xor IV) makes the padding invalid every time, not 255 times in 256.
    blob[-17] ^= 0x09
    with pytest.raises(DecryptionError) as pad_failure:
        rsaaes.decrypt(private_key, bytes(blob))
    assert str(rsa_failure.value) == str(pad_failure.value)
    assert type(rsa_failure.value) is type(pad_failure.value)


def test_wrapped_key_of_wrong_length_rejected(private_key: rsa.RSAPrivateKey) -> None:
    """W that unwraps to something other than 32 bytes is rejected even if the AES layer fits."""
    key16 = os.urandom(16)
    w = private_key.public_key().encrypt(key16, padding.PKCS1v15())
    blob = b"\x01" + len(w).to_bytes(4, "big") + w + aes.encrypt_embediv(key16 * 2, b"data")
    with pytest.raises(DecryptionError):
        rsaaes.decrypt(private_key, blob)


def test_short_w_is_left_padded(private_key: rsa.RSAPrivateKey) -> None:
    """A W shorter than the modulus (leading zeros dropped, as the web writes) still decrypts."""
    key = os.urandom(32)
    while True:
        w = private_key.public_key().encrypt(key, padding.PKCS1v15())
        if w[0] == 0:
            break
    short = w.lstrip(b"\x00")
    blob = b"\x01" + len(short).to_bytes(4, "big") + short + aes.encrypt_embediv(key, b"web")
    assert rsaaes.decrypt(private_key, blob) == b"web"


def test_v0_layout_decrypts(private_key: rsa.RSAPrivateKey) -> None:
    """The legacy R2012 layout (3 ignored bytes, zero IV, no IV in the blob) is read."""
    key = os.urandom(32)
    w = private_key.public_key().encrypt(key, padding.PKCS1v15())
    body = aes.encrypt_embediv(key, b"old mail", bytes(16))[16:]
    blob = b"\x00\xaa\xbb\xcc" + len(w).to_bytes(4, "big") + w + body
    assert rsaaes.decrypt(private_key, blob) == b"old mail"
