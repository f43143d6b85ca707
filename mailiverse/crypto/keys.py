"""RSA key loading and encoding (docs/formats.md §3), lenient where the original writers were sloppy.

Accepted inputs: SPKI or PKCS#1 public keys, PKCS#8 or PKCS#1 private keys, each as DER,
PEM, or base64 text of the DER (the original's ".pem.b64" and environment values).  The web
client's asn1writer emits non-minimal DER lengths that ``cryptography`` rejects, so when the
strict parser refuses a key we read it with the small BER TLV reader below and rebuild it from
its numbers.  Everything else (consistency of p, q, d, ...) is still checked by ``cryptography``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from mailiverse.crypto.errors import CryptoError

#: rsaEncryption, 1.2.840.113549.1.1.1, as DER content bytes.
RSA_ENCRYPTION_OID = bytes.fromhex("2a864886f70d010101")
MAX_KEY_INPUT = 64 * 1024
MIN_BITS = 1024
MAX_BITS = 16384
_TAG_INTEGER = 0x02
_TAG_BIT_STRING = 0x03
_TAG_OCTET_STRING = 0x04
_TAG_NULL = 0x05
_TAG_OID = 0x06
_TAG_SEQUENCE = 0x30
_PEM = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.DOTALL)


class KeyFormatError(CryptoError):
    """The bytes are not an RSA key in any accepted encoding."""


@dataclass(frozen=True)
class _Tlv:
    tag: int
    content: bytes


def _read_tlv(data: bytes, pos: int) -> tuple[_Tlv, int]:
    """Read one BER TLV at ``pos`` (definite lengths, long form allowed non-minimal)."""
    if pos + 2 > len(data):
        raise KeyFormatError("truncated ASN.1")
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise KeyFormatError("unsupported ASN.1 tag")
    first = data[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    elif first == 0x80 or first > 0x84:
        raise KeyFormatError("unsupported ASN.1 length")
    else:
        count = first & 0x7F
        if pos + count > len(data):
            raise KeyFormatError("truncated ASN.1")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    if pos + length > len(data):
        raise KeyFormatError("truncated ASN.1")
    return _Tlv(tag, data[pos : pos + length]), pos + length


def _read_all(data: bytes) -> list[_Tlv]:
    items = []
    pos = 0
    while pos < len(data):
        item, pos = _read_tlv(data, pos)
        items.append(item)
    return items


def _single(data: bytes, tag: int) -> _Tlv:
    item, end = _read_tlv(data, 0)
    if end != len(data) or item.tag != tag:
        raise KeyFormatError("unexpected ASN.1 structure")
    return item


def _integer(item: _Tlv) -> int:
    if item.tag != _TAG_INTEGER or not item.content:
        raise KeyFormatError("expected an ASN.1 INTEGER")
    return int.from_bytes(item.content, "big", signed=True)


def _check_algorithm(item: _Tlv) -> None:
    if item.tag != _TAG_SEQUENCE:
        raise KeyFormatError("expected an AlgorithmIdentifier")
    parts = _read_all(item.content)
    if not parts or parts[0].tag != _TAG_OID or parts[0].content != RSA_ENCRYPTION_OID:
        raise KeyFormatError("not an RSA key")
    if len(parts) > 2 or (len(parts) == 2 and parts[1] != _Tlv(_TAG_NULL, b"")):
        raise KeyFormatError("unexpected RSA algorithm parameters")


def _positive(*values: int) -> None:
    if any(v <= 0 for v in values):
        raise KeyFormatError("RSA key numbers must be positive")


def _check_size(n: int) -> None:
    if not MIN_BITS <= n.bit_length() <= MAX_BITS:
        raise KeyFormatError(f"RSA modulus must have {MIN_BITS}..{MAX_BITS} bits")


def _pkcs1_private_numbers(der: bytes) -> rsa.RSAPrivateNumbers:
    fields = _read_all(_single(der, _TAG_SEQUENCE).content)
    if len(fields) < 9:
        raise KeyFormatError("RSAPrivateKey has too few fields")
    version, n, e, d, p, q, dmp1, dmq1, iqmp = (_integer(f) for f in fields[:9])
    if version != 0 or len(fields) != 9:
        raise KeyFormatError("multi-prime RSA keys are not supported")
    _positive(n, e, d, p, q, dmp1, dmq1, iqmp)
    _check_size(n)
    return rsa.RSAPrivateNumbers(p, q, d, dmp1, dmq1, iqmp, rsa.RSAPublicNumbers(e, n))


def _ber_private_numbers(der: bytes) -> rsa.RSAPrivateNumbers:
    fields = _read_all(_single(der, _TAG_SEQUENCE).content)
    if len(fields) >= 3 and fields[1].tag == _TAG_SEQUENCE:
        # PKCS#8 PrivateKeyInfo: version, algorithm, OCTET STRING, [attributes]
        if _integer(fields[0]) not in (0, 1) or fields[2].tag != _TAG_OCTET_STRING:
            raise KeyFormatError("malformed PKCS#8 PrivateKeyInfo")
        _check_algorithm(fields[1])
        return _pkcs1_private_numbers(fields[2].content)
    return _pkcs1_private_numbers(der)


def _ber_public_numbers(der: bytes) -> rsa.RSAPublicNumbers:
    fields = _read_all(_single(der, _TAG_SEQUENCE).content)
    if len(fields) == 2 and fields[0].tag == _TAG_SEQUENCE:
        _check_algorithm(fields[0])
        bits = fields[1]
        if bits.tag != _TAG_BIT_STRING or not bits.content or bits.content[0] != 0:
            raise KeyFormatError("malformed SubjectPublicKeyInfo")
        fields = _read_all(_single(bits.content[1:], _TAG_SEQUENCE).content)
    if len(fields) != 2:
        raise KeyFormatError("malformed RSAPublicKey")
    n, e = _integer(fields[0]), _integer(fields[1])
    _positive(n, e)
    _check_size(n)
    return rsa.RSAPublicNumbers(e, n)


def _to_der(data: bytes, what: str) -> tuple[bytes, str | None]:
    """Turn PEM or base64 text into DER; return (der, PEM label or None)."""
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError(f"{what} must be bytes")
    data = bytes(data)
    if len(data) > MAX_KEY_INPUT:
        raise KeyFormatError(f"{what} is too large")
    if not data:
        raise KeyFormatError(f"{what} is empty")
    if data[0] == _TAG_SEQUENCE:
        return data, None
    match = _PEM.search(data)
    label = None
    body = data
    if match:
        label = match.group(1).decode("ascii")
        if b"Proc-Type" in match.group(2):
            raise KeyFormatError("encrypted PEM keys are not supported")
        body = match.group(2)
    try:
        der = base64.b64decode(b"".join(body.split()), validate=True)
    except (binascii.Error, ValueError):
        raise KeyFormatError(f"{what} is not DER, PEM or base64") from None
    if not der or der[0] != _TAG_SEQUENCE:
        raise KeyFormatError(f"{what} is not DER, PEM or base64")
    return der, label


def load_public_key(data: bytes) -> rsa.RSAPublicKey:
    """Load an RSA public key: SPKI or PKCS#1, as DER, PEM or base64 of the DER."""
    der, _label = _to_der(data, "public key")
    key = None
    try:
        key = serialization.load_der_public_key(der)
    except (ValueError, UnsupportedAlgorithm):
        pass
    if key is None:
        try:
            key = _ber_public_numbers(der).public_key()
        except ValueError as e:
            raise KeyFormatError("not a usable RSA public key") from e
    if not isinstance(key, rsa.RSAPublicKey):
        raise KeyFormatError("not an RSA public key")
    _check_size(key.public_numbers().n)
    return key


def load_private_key(data: bytes) -> rsa.RSAPrivateKey:
    """Load an RSA private key: PKCS#8 or PKCS#1, DER, PEM or base64; lenient about DER lengths."""
    der, _label = _to_der(data, "private key")
    key = None
    try:
        key = serialization.load_der_private_key(der, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        pass
    if key is None:
        try:
            key = _ber_private_numbers(der).private_key()
        except ValueError as e:
            raise KeyFormatError("not a usable RSA private key") from e
    if not isinstance(key, rsa.RSAPrivateKey):
        raise KeyFormatError("not an RSA private key")
    _check_size(key.public_key().public_numbers().n)
    return key


def strict_der_accepts_private(der: bytes) -> bool:
    """Whether ``cryptography``'s strict DER parser alone accepts these private key bytes."""
    try:
        serialization.load_der_private_key(bytes(der), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


def public_key_der(key: rsa.RSAPublicKey | rsa.RSAPrivateKey) -> bytes:
    """X.509 SubjectPublicKeyInfo DER (the original's ``RSA-PublicKey`` bytes)."""
    if isinstance(key, rsa.RSAPrivateKey):
        key = key.public_key()
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def private_key_der(key: rsa.RSAPrivateKey) -> bytes:
    """Unencrypted PKCS#8 PrivateKeyInfo DER (the original's ``RSA-PrivateKey`` bytes)."""
    return key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def generate_private_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    """A fresh RSA key with e = 65537 from the operating system's CSPRNG."""
    if not 2048 <= bits <= MAX_BITS:
        raise CryptoError(f"key size must be 2048..{MAX_BITS} bits")
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def public_key_fingerprint(key: rsa.RSAPublicKey | rsa.RSAPrivateKey) -> str:
    """Lowercase hex SHA-256 of the SPKI DER."""
    return hashlib.sha256(public_key_der(key)).hexdigest()
