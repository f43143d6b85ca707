"""Key blocks and mail blocks: vectors, round trips and lenient reading."""

from __future__ import annotations

import base64
import json
import zlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailiverse.compat import blocks
from mailiverse.crypto import aes, lenient, pbkdf
from mailiverse.crypto.errors import DecryptionError

VECTORS = json.loads((Path(__file__).resolve().parent.parent / "vectors" / "storage_blocks.json").read_text("utf-8"))
KEY = bytes(range(32))


@pytest.mark.parametrize("case", VECTORS["key_blocks"], ids=lambda c: c["producer"][:4])
def test_key_block_vectors(case: dict) -> None:
    """Original key blocks (Java and web) decrypt with the password's CryptoKey."""
    ck = pbkdf.crypto_key(case["password"])
    env = blocks.decrypt_key_block(ck, base64.b64decode(case["block_b64"]))
    if "plaintext_text" in case:
        assert blocks.environment_bytes(env).decode() == case["plaintext_text"]
    else:
        assert blocks.environment_bytes(env).hex() == case["plaintext_bytes_hex"]


@pytest.mark.parametrize("case", VECTORS["mail_blocks"], ids=lambda c: c["server_password"])
def test_mail_block_vectors(case: dict) -> None:
    """The server mail block decrypts with the desktop-Java key and re-encrypts identically."""
    assert blocks.mail_block_key(case["server_password"]).hex() == case["pbe_key_hex"]
    env = blocks.decrypt_mail_block(case["server_password"], case["block_b64"])
    assert blocks.environment_bytes(env).decode() == case["plaintext_text"]
    iv = base64.b64decode(case["block_b64"])[:16]
    assert blocks.encrypt_mail_block(case["server_password"], env, iv=iv) == case["block_b64"]


def test_mail_block_uses_low_byte_password() -> None:
    """A non-ASCII server password is converted the desktop-Java way, not as UTF-8."""
    assert blocks.mail_block_key("pä") == pbkdf.derive("pä", pbkdf.SALT_CRYPTO, variant="java-desktop")
    assert blocks.mail_block_key("pä") != pbkdf.crypto_key("pä")


@settings(max_examples=50)
@given(st.dictionaries(st.text(max_size=20), st.text(max_size=50), max_size=8))
def test_key_block_round_trip(env: dict[str, str]) -> None:
    """Any string map survives encrypt_key_block / decrypt_key_block, in key order."""
    out = blocks.decrypt_key_block(KEY, blocks.encrypt_key_block(KEY, env))
    assert out == env and list(out) == list(env)


def test_lenient_web_style_block() -> None:
    """A block with CESU-8 text, a zero Adler-32 and another key order is read."""
    text = 'core.util.Environment!{"version":"2.0","name":"\U0001f600"}'
    raw = zlib.compressobj(6, zlib.DEFLATED, -15)
    packed = b"\x78\x9c" + raw.compress(lenient.encode_web_text(text)) + raw.flush() + bytes(4)
    env = blocks.decrypt_key_block(KEY, aes.encrypt_embediv(KEY, packed))
    assert env == {"name": "\U0001f600", "version": "2.0"}


@pytest.mark.parametrize(
    "plaintext",
    [
        b"core.util.Environment!{not json",
        b"java.lang.String!hello",
        b'core.util.Environment!{"a":1}',
        b"\xed\xa0\x80",
    ],
)
def test_malformed_content_is_decryption_error(plaintext: bytes) -> None:
    """Decryptable but malformed content raises the generic DecryptionError."""
    with pytest.raises(DecryptionError, match="^message could not be decrypted$"):
        blocks.decrypt_key_block(KEY, aes.encrypt_embediv(KEY, lenient.deflate(plaintext)))


def test_wrong_password_and_bad_base64_rejected() -> None:
    """Wrong keys and non-base64 mail blocks raise DecryptionError."""
    block = blocks.encrypt_key_block(KEY, {"version": "2.0"})
    with pytest.raises(DecryptionError):
        blocks.decrypt_key_block(bytes(32), block)
    with pytest.raises(DecryptionError):
        blocks.decrypt_mail_block_with_key(KEY, "not base64!")


def test_oversized_environment_rejected() -> None:
    """An environment inflating past the cap is refused."""
    block = aes.encrypt_embediv(
        KEY,
        lenient.deflate(b"core.util.Environment!" + b" " * (blocks.MAX_ENVIRONMENT_SIZE + 1)),
    )
    with pytest.raises(DecryptionError):
        blocks.decrypt_key_block(KEY, block)
