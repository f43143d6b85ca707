"""Format dispatch for stored mail objects: v1 and v2, compressed, by first byte."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from mailiverse.crypto import aes, formats, lenient
from mailiverse.crypto.errors import CryptoError, DecryptionError


@settings(max_examples=25, deadline=None)
@given(data=st.binary(max_size=4000), fmt=st.sampled_from(formats.FORMATS))
def test_mail_object_round_trip(private_key: rsa.RSAPrivateKey, data: bytes, fmt: str) -> None:
    """seal_mail_object then open_mail_object returns the data in both formats."""
    blob = formats.seal_mail_object(fmt, private_key.public_key(), data)
    assert blob[0] == (1 if fmt == formats.FORMAT_V1 else 2)
    assert formats.open_mail_object(private_key, blob) == data
    assert lenient.inflate(formats.decrypt_any(private_key, blob)) == data


@pytest.mark.parametrize("fmt", formats.FORMATS)
def test_stream_encryptor_feeds_zlib_output(private_key: rsa.RSAPrivateKey, fmt: str) -> None:
    """Streaming zlib output through stream_encryptor gives a readable mail object."""
    data = b"Subject: x\r\n\r\n" + b"line\r\n" * 20000
    deflater = lenient.Deflater()
    enc = formats.stream_encryptor(fmt, private_key.public_key())
    parts = [enc.update(deflater.update(data[i : i + 1000])) for i in range(0, len(data), 1000)]
    parts.append(enc.update(deflater.finalize()))
    parts.append(enc.finalize())
    assert formats.open_mail_object(private_key, b"".join(parts)) == data


def test_unknown_format_refused(private_key: rsa.RSAPrivateKey) -> None:
    """Only v1 and v2 exist."""
    with pytest.raises(CryptoError):
        formats.stream_encryptor("v3", private_key.public_key())


@pytest.mark.parametrize("blob", [b"", b"\x03abc", b"\xff" * 300])
def test_unknown_first_byte_rejected(private_key: rsa.RSAPrivateKey, blob: bytes) -> None:
    """Blobs starting with anything but 0x00..0x02 raise the generic error."""
    with pytest.raises(DecryptionError):
        formats.decrypt_any(private_key, blob)


def test_undecompressible_content_is_decryption_error(
    private_key: rsa.RSAPrivateKey,
) -> None:
    """A v1 object whose plaintext is not zlib fails as DecryptionError, not ValueError."""
    from mailiverse.crypto import rsaaes

    blob = rsaaes.encrypt_v1(private_key.public_key(), b"not zlib at all")
    with pytest.raises(DecryptionError):
        formats.open_mail_object(private_key, blob)


def test_mail_object_size_cap(private_key: rsa.RSAPrivateKey) -> None:
    """open_mail_object enforces its inflated size cap."""
    blob = formats.seal_mail_object(formats.FORMAT_V2, private_key.public_key(), bytes(100000))
    with pytest.raises(DecryptionError):
        formats.open_mail_object(private_key, blob, max_size=1000)
    assert aes.KEY_SIZE == 32
