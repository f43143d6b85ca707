"""AES-CBC-256-EmbedIV: round trips, streaming equivalence and strict rejection."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailiverse.crypto import aes
from mailiverse.crypto.errors import CryptoError, DecryptionError

KEY = bytes(range(32))


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, start = [], 0
    for p in points + [len(data)]:
        pieces.append(data[start:p])
        start = p
    return pieces


@given(st.binary(min_size=32, max_size=32), st.binary(max_size=2000))
def test_round_trip(key: bytes, data: bytes) -> None:
    """Decrypting an encryption gives the plaintext back, for any key and plaintext."""
    blob = aes.encrypt_embediv(key, data)
    assert len(blob) == 16 + (len(data) // 16 + 1) * 16
    assert aes.decrypt_embediv(key, blob) == data


@given(
    st.binary(max_size=1000),
    st.lists(st.integers(min_value=0), max_size=8),
    st.binary(min_size=16, max_size=16),
)
def test_streaming_equals_one_shot(data: bytes, cuts: list[int], iv: bytes) -> None:
    """Feeding the stream classes in arbitrary pieces gives the one-shot bytes both ways."""
    enc = aes.CbcEncryptor(KEY, iv)
    streamed = b"".join(enc.update(p) for p in _split(data, cuts)) + enc.finalize()
    assert streamed == aes.encrypt_embediv(KEY, data, iv)
    dec = aes.CbcDecryptor(KEY)
    plain = b"".join(dec.update(p) for p in _split(streamed, cuts)) + dec.finalize()
    assert plain == data


def test_fresh_iv_each_time() -> None:
    """Two encryptions of the same plaintext use different IVs."""
    assert aes.encrypt_embediv(KEY, b"x")[:16] != aes.encrypt_embediv(KEY, b"x")[:16]


@pytest.mark.parametrize("pad", [0, 17, 255])
def test_bad_padding_value_rejected(pad: int) -> None:
    """A final block whose pad byte is 0 or above 16 is rejected."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    iv = os.urandom(16)
    block = bytes(15) + bytes([pad])
    ct = Cipher(algorithms.AES(KEY), modes.CBC(iv)).encryptor().update(block)
    with pytest.raises(DecryptionError):
        aes.decrypt_embediv(KEY, iv + ct)


def test_inconsistent_padding_rejected() -> None:
    """Padding whose bytes are not all equal is rejected (Java checks every byte)."""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    iv = os.urandom(16)
    block = b"A" * 12 + b"\x04\x04\x03\x04"
    ct = Cipher(algorithms.AES(KEY), modes.CBC(iv)).encryptor().update(block)
    with pytest.raises(DecryptionError):
        aes.decrypt_embediv(KEY, iv + ct)


@pytest.mark.parametrize("length", [0, 5, 16, 20, 31, 33])
def test_bad_lengths_rejected(length: int) -> None:
    """Blobs without a whole number of blocks after the IV are rejected generically."""
    with pytest.raises(DecryptionError, match="^message could not be decrypted$"):
        aes.decrypt_embediv(KEY, os.urandom(length))


def test_wrong_key_rejected_or_garbage() -> None:
    """A wrong key never returns the plaintext (it fails padding or yields other bytes)."""
    blob = aes.encrypt_embediv(KEY, b"secret message")
    try:
        out = aes.decrypt_embediv(bytes(32), blob)
    except DecryptionError:
        return
    assert out != b"secret message"


@pytest.mark.parametrize(("key", "iv"), [(bytes(16), None), (bytes(32), bytes(8))])
def test_bad_parameters_refused(key: bytes, iv: bytes | None) -> None:
    """Keys that are not 32 bytes and IVs that are not 16 bytes are refused up front."""
    with pytest.raises(CryptoError):
        aes.encrypt_embediv(key, b"data", iv)


def test_streaming_decryptor_rejects_truncated_input() -> None:
    """A stream cut inside a block fails at finalize."""
    blob = aes.encrypt_embediv(KEY, b"z" * 40)
    dec = aes.CbcDecryptor(KEY)
    dec.update(blob[:-3])
    with pytest.raises(DecryptionError):
        dec.finalize()


@settings(max_examples=50)
@given(
    st.binary(max_size=64),
    st.integers(min_value=0),
    st.integers(min_value=0, max_value=7),
)
def test_bit_flips_in_last_block_never_crash(data: bytes, pos: int, bit: int) -> None:
    """Flipping any bit gives the plaintext-changed result or DecryptionError, nothing else."""
    blob = bytearray(aes.encrypt_embediv(KEY, data))
    blob[pos % len(blob)] ^= 1 << bit
    try:
        out = aes.decrypt_embediv(KEY, bytes(blob))
    except DecryptionError:
        return
    assert out != data
