"""The v2 envelope: round trips at any chunk size, streaming, and rejection of every tampering."""

from __future__ import annotations

import io

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from mailiverse.crypto import envelope
from mailiverse.crypto.errors import CryptoError, DecryptionError

HEADER = 1 + 2 + 256 + 4 + 7
TAG = 16


def _chunks(blob: bytes, chunk_size: int) -> list[bytes]:
    body = blob[HEADER:]
    step = chunk_size + TAG
    return [body[i : i + step] for i in range(0, len(body), step)]


@settings(max_examples=40, deadline=None)
@given(data=st.binary(max_size=2000), chunk_size=st.integers(min_value=1, max_value=300))
def test_round_trip_any_chunk_size(private_key: rsa.RSAPrivateKey, data: bytes, chunk_size: int) -> None:
    """seal/open_sealed round-trip with the documented size for any chunk size."""
    blob = envelope.seal(private_key.public_key(), data, chunk_size)
    chunks = max(1, -(-len(data) // chunk_size))
    assert len(blob) == HEADER + len(data) + chunks * TAG
    assert int.from_bytes(blob[HEADER - 11 : HEADER - 7], "big") == chunk_size
    assert envelope.open_sealed(private_key, blob) == data


@settings(max_examples=30, deadline=None)
@given(
    data=st.binary(max_size=1500),
    chunk_size=st.integers(min_value=1, max_value=200),
    cut=st.integers(min_value=1, max_value=333),
)
def test_streaming_matches_one_shot(private_key: rsa.RSAPrivateKey, data: bytes, chunk_size: int, cut: int) -> None:
    """Pushing data in arbitrary pieces gives the one-shot structure and the same plaintext."""
    enc = envelope.SealEncryptor(private_key.public_key(), chunk_size)
    streamed = b"".join(enc.update(data[i : i + cut]) for i in range(0, len(data), cut)) + enc.finalize()
    one_shot = envelope.seal(private_key.public_key(), data, chunk_size)
    assert len(streamed) == len(one_shot)
    assert [len(c) for c in _chunks(streamed, chunk_size)] == [len(c) for c in _chunks(one_shot, chunk_size)]
    dec = envelope.SealDecryptor(private_key)
    out = b"".join(dec.update(streamed[i : i + cut]) for i in range(0, len(streamed), cut)) + dec.finalize()
    assert out == data
    assert envelope.open_sealed(private_key, streamed) == data


def test_file_streams(private_key: rsa.RSAPrivateKey) -> None:
    """seal_stream/open_stream move data between file objects and report bytes written."""
    data = bytes(range(256)) * 2000
    sealed = io.BytesIO()
    written = envelope.seal_stream(private_key.public_key(), io.BytesIO(data), sealed, chunk_size=4096)
    assert written == len(sealed.getvalue())
    out = io.BytesIO()
    assert envelope.open_stream(private_key, io.BytesIO(sealed.getvalue()), out) == len(data)
    assert out.getvalue() == data


def test_empty_plaintext_is_one_empty_final_chunk(
    private_key: rsa.RSAPrivateKey,
) -> None:
    """An empty message is the header plus a single 16-byte tag."""
    blob = envelope.seal(private_key.public_key(), b"")
    assert len(blob) == HEADER + TAG
    assert envelope.open_sealed(private_key, blob) == b""


@pytest.fixture(scope="module")
def sample(private_key: rsa.RSAPrivateKey) -> bytes:
    """A four-chunk blob (chunk size 64, last chunk short)."""
    return envelope.seal(private_key.public_key(), bytes(range(200)), 64)


def test_every_bit_flip_rejected(private_key: rsa.RSAPrivateKey, sample: bytes) -> None:
    """Flipping any single byte anywhere in a blob (header, W, chunks, tags) is rejected."""
    for pos in range(len(sample)):
        tampered = bytearray(sample)
        tampered[pos] ^= 0x01 << (pos % 8)
        with pytest.raises(DecryptionError, match="^message could not be decrypted$"):
            envelope.open_sealed(private_key, bytes(tampered))


def test_truncation_at_each_chunk_boundary_rejected(private_key: rsa.RSAPrivateKey, sample: bytes) -> None:
    """Dropping trailing chunks (cut exactly at a boundary) is detected by the final flag."""
    step = 64 + TAG
    for boundary in range(HEADER, len(sample), step):
        with pytest.raises(DecryptionError):
            envelope.open_sealed(private_key, sample[:boundary])


@pytest.mark.parametrize("cut", [1, 5, 16, 17])
def test_truncation_inside_chunks_rejected(private_key: rsa.RSAPrivateKey, sample: bytes, cut: int) -> None:
    """A blob cut inside its last chunk or inside the header is rejected."""
    with pytest.raises(DecryptionError):
        envelope.open_sealed(private_key, sample[:-cut])
    with pytest.raises(DecryptionError):
        envelope.open_sealed(private_key, sample[: HEADER - cut])


def test_reordering_rejected(private_key: rsa.RSAPrivateKey, sample: bytes) -> None:
    """Swapping two full chunks is rejected."""
    c = _chunks(sample, 64)
    swapped = sample[:HEADER] + c[1] + c[0] + b"".join(c[2:])
    with pytest.raises(DecryptionError):
        envelope.open_sealed(private_key, swapped)


def test_dropped_middle_chunk_rejected(private_key: rsa.RSAPrivateKey, sample: bytes) -> None:
    """Removing a chunk from the middle is rejected."""
    c = _chunks(sample, 64)
    with pytest.raises(DecryptionError):
        envelope.open_sealed(private_key, sample[:HEADER] + c[0] + b"".join(c[2:]))


@pytest.mark.parametrize("extra", [b"\x00", b"x" * 16, b"y" * 80])
def test_trailing_bytes_rejected(private_key: rsa.RSAPrivateKey, sample: bytes, extra: bytes) -> None:
    """Anything after the final chunk is rejected."""
    with pytest.raises(DecryptionError):
        envelope.open_sealed(private_key, sample + extra)


def test_chunk_spliced_from_other_message_rejected(private_key: rsa.RSAPrivateKey, sample: bytes) -> None:
    """A chunk from another message under the same key pair does not verify (header is AAD)."""
    other = envelope.seal(private_key.public_key(), bytes(range(200)), 64)
    spliced = sample[:HEADER] + _chunks(other, 64)[0] + b"".join(_chunks(sample, 64)[1:])
    with pytest.raises(DecryptionError):
        envelope.open_sealed(private_key, spliced)


def test_wrong_key_rejected(other_key: rsa.RSAPrivateKey, sample: bytes) -> None:
    """A blob for another key is rejected."""
    with pytest.raises(DecryptionError):
        envelope.open_sealed(other_key, sample)


@pytest.mark.parametrize(
    ("offset", "value"),
    [
        (1, b"\x01\x01"),
        (1, b"\x00\xff"),
        (1, b"\xff\xff"),
        (HEADER - 11, b"\x00\x00\x00\x00"),
        (HEADER - 11, b"\x01\x00\x00\x01"),
    ],
)
def test_bad_length_fields_rejected(private_key: rsa.RSAPrivateKey, sample: bytes, offset: int, value: bytes) -> None:
    """A W length other than the modulus size, or a zero or oversized chunk size, is rejected."""
    tampered = sample[:offset] + value + sample[offset + len(value) :]
    with pytest.raises(DecryptionError):
        envelope.open_sealed(private_key, tampered)


def test_version_byte_checked(private_key: rsa.RSAPrivateKey, sample: bytes) -> None:
    """A blob not starting with 0x02 is rejected."""
    with pytest.raises(DecryptionError):
        envelope.open_sealed(private_key, b"\x01" + sample[1:])


@pytest.mark.parametrize("size", [0, envelope.MAX_CHUNK_SIZE + 1])
def test_encryptor_refuses_bad_chunk_size(private_key: rsa.RSAPrivateKey, size: int) -> None:
    """Chunk sizes outside 1..16 MiB are refused when sealing."""
    with pytest.raises(CryptoError):
        envelope.SealEncryptor(private_key.public_key(), size)


def test_open_stream_error_after_partial_output(private_key: rsa.RSAPrivateKey, sample: bytes) -> None:
    """open_stream raises on a truncated stream after writing only authenticated chunks."""
    out = io.BytesIO()
    with pytest.raises(DecryptionError):
        envelope.open_stream(private_key, io.BytesIO(sample[: HEADER + 2 * (64 + TAG)]), out)
    assert out.getvalue() == bytes(range(64))
