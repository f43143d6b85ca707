"""RSA key loading in every accepted encoding, including non-minimal DER."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from mailiverse.crypto import keys


def _nonminimal(der: bytes) -> bytes:
    """Re-encode a PKCS#8 DER with short lengths >= 3 in long form (asn1writer-style non-minimal DER)."""

    def walk(data: bytes) -> bytes:
        out, pos = bytearray(), 0
        while pos < len(data):
            tag = data[pos]
            first = data[pos + 1]
            pos += 2
            if first < 0x80:
                length = first
            else:
                n = first & 0x7F
                length = int.from_bytes(data[pos : pos + n], "big")
                pos += n
            content = data[pos : pos + length]
            pos += length
            if tag == 0x30 or (tag == 0x04 and content[:1] == b"\x30"):
                content = walk(content)
            if len(content) < 3:
                head = bytes([len(content)])
            elif len(content) < 128:
                head = bytes([0x81, len(content)])
            else:
                head = b"\x82" + len(content).to_bytes(2, "big")
            out += bytes([tag]) + head + content
        return bytes(out)

    return walk(der)


def test_pem_pkcs1_and_base64_forms(private_key: rsa.RSAPrivateKey) -> None:
    """Private and public keys load from PKCS#8/PKCS#1 DER, PEM and base64 text alike."""
    numbers = private_key.private_numbers()
    for fmt in (
        serialization.PrivateFormat.PKCS8,
        serialization.PrivateFormat.TraditionalOpenSSL,
    ):
        der = private_key.private_bytes(serialization.Encoding.DER, fmt, serialization.NoEncryption())
        pem = private_key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())
        for data in (der, pem, base64.b64encode(der)):
            assert keys.load_private_key(data).private_numbers() == numbers
    public = private_key.public_key()
    for fmt in (
        serialization.PublicFormat.SubjectPublicKeyInfo,
        serialization.PublicFormat.PKCS1,
    ):
        der = public.public_bytes(serialization.Encoding.DER, fmt)
        pem = public.public_bytes(serialization.Encoding.PEM, fmt)
        for data in (der, pem, base64.b64encode(der)):
            assert keys.load_public_key(data).public_numbers() == public.public_numbers()


def test_nonminimal_der_loads(private_key: rsa.RSAPrivateKey) -> None:
    """A PKCS#8 key with long-form short lengths is refused by cryptography but loaded by us."""
    der = _nonminimal(keys.private_key_der(private_key))
    assert der != keys.private_key_der(private_key)
    assert not keys.strict_der_accepts_private(der)
    assert keys.load_private_key(der).private_numbers() == private_key.private_numbers()


def test_inconsistent_numbers_refused(private_key: rsa.RSAPrivateKey) -> None:
    """A lenient-path key whose numbers do not fit together is refused."""
    der = bytearray(_nonminimal(keys.private_key_der(private_key)))
    der[-5] ^= 0x01  # inside qInv
    with pytest.raises(keys.KeyFormatError):
        keys.load_private_key(bytes(der))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x30",
        b"\x30\x03\x02\x01\x00",
        b"not a key",
        b"\x30\x80\x00\x00",
        b"A" * 70000,
    ],
)
def test_garbage_refused(data: bytes) -> None:
    """Empty, truncated, indefinite-length, non-key and oversized inputs are refused."""
    with pytest.raises(keys.KeyFormatError):
        keys.load_private_key(data)
    with pytest.raises(keys.KeyFormatError):
        keys.load_public_key(data)


def test_non_rsa_key_refused() -> None:
    """An EC key is not accepted as an RSA key."""
    ec_key = ec.generate_private_key(ec.SECP256R1())
    der = ec_key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(keys.KeyFormatError):
        keys.load_private_key(der)
    with pytest.raises(keys.KeyFormatError):
        keys.load_public_key(
            ec_key.public_key().public_bytes(
                serialization.Encoding.DER,
                serialization.PublicFormat.SubjectPublicKeyInfo,
            )
        )


def test_generate_and_fingerprint() -> None:
    """Generated keys are 2048-bit e=65537 and the fingerprint is hex SHA-256 of the SPKI."""
    import hashlib

    key = keys.generate_private_key()
    assert key.key_size == 2048 and key.public_key().public_numbers().e == 65537
    assert keys.public_key_fingerprint(key) == hashlib.sha256(keys.public_key_der(key)).hexdigest()
    assert keys.load_private_key(keys.private_key_der(key)).private_numbers() == key.private_numbers()
    with pytest.raises(keys.CryptoError):
        keys.generate_private_key(1024)
