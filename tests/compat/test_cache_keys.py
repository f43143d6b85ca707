"""Cache-file keys: SHA-256(name || stored private key bytes), and cache file encryption."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest

from mailiverse.compat import cache_keys
from mailiverse.crypto.errors import CryptoError, DecryptionError

VECTORS = json.loads((Path(__file__).resolve().parent.parent / "vectors" / "cache_keys.json").read_text("utf-8"))
DERIVATIONS = [(g["seed_b64"], d) for g in VECTORS["groups"] for d in g["derivations"]]


@pytest.mark.parametrize(
    ("seed_b64", "d"),
    DERIVATIONS,
    ids=[d["name"] + "-" + s[40:46] for s, d in DERIVATIONS],
)
def test_vector_derivations(seed_b64: str, d: dict) -> None:
    """Every vector cache key is reproduced, and example blobs decrypt to their text."""
    seed = base64.b64decode(seed_b64)
    assert cache_keys.cache_key(d["name"], seed).hex() == d["aes_key_hex"]
    if "example_blob_b64" in d:
        blob = base64.b64decode(d["example_blob_b64"])
        assert cache_keys.decrypt_cache_file(d["name"], seed, blob) == d["example_plaintext_text"].encode()
        assert (
            cache_keys.encrypt_cache_file(d["name"], seed, d["example_plaintext_text"].encode(), iv=blob[:16]) == blob
        )


def test_names_separate_keys() -> None:
    """Different names give different keys and a file opened under the wrong name fails."""
    seed = b"\x30" + bytes(100)
    assert cache_keys.cache_key("I", seed) == hashlib.sha256(b"I" + seed).digest()
    assert cache_keys.cache_key("M_01", seed) != cache_keys.cache_key("M_02", seed)
    blob = cache_keys.encrypt_cache_file("M_01", seed, b"index" * 10)
    assert cache_keys.decrypt_cache_file("M_01", seed, blob) == b"index" * 10
    try:
        wrong = cache_keys.decrypt_cache_file("M_02", seed, blob)
    except DecryptionError:
        return
    assert wrong != b"index" * 10


@pytest.mark.parametrize("name", ["", "Cache/I", "a b", "x" * 300, "caf\u00e9"])
def test_bad_names_refused(name: str) -> None:
    """Empty, path-like, spaced, overlong and non-ASCII names are refused."""
    with pytest.raises(CryptoError):
        cache_keys.cache_key(name, b"seed")
