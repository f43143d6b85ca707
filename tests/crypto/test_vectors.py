"""Every case of the crypto vector files, run through the conformance checkers and directly."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailiverse.conformance import files_crypto
from mailiverse.conformance.core import Case, load_checkers, run_file
from mailiverse.crypto import aes, pbkdf, rsaaes
from mailiverse.crypto.errors import DecryptionError

VECTORS = Path(__file__).resolve().parent.parent / "vectors"
FILES = (
    "pbkdf2",
    "aes_cbc_256_embediv",
    "rsa_keys",
    "rsa_aes_cbc_256_embediv",
    "storage_blocks",
    "cache_keys",
    "misc",
)


def _load(name: str) -> dict:
    return json.loads((VECTORS / f"{name}.json").read_text(encoding="utf-8"))


def _conformance_cases() -> Iterator[tuple[str, Case]]:
    checkers = load_checkers()
    token = files_crypto.VECTOR_DIRECTORY.set(VECTORS)
    try:
        for name in FILES:
            for case in checkers[name].fn(_load(name)):
                yield name, case
    finally:
        files_crypto.VECTOR_DIRECTORY.reset(token)


CONFORMANCE = list(_conformance_cases())


@pytest.mark.parametrize(("name", "case"), CONFORMANCE, ids=[f"{n}:{c.label}" for n, c in CONFORMANCE])
def test_conformance_case(name: str, case: Case) -> None:
    """Each vector case of our files passes its conformance check."""
    token = files_crypto.VECTOR_DIRECTORY.set(VECTORS)
    try:
        case.run()
    finally:
        files_crypto.VECTOR_DIRECTORY.reset(token)


@pytest.mark.parametrize("name", FILES)
def test_runner_reports_file_clean(name: str) -> None:
    """The conformance runner finds every section understood and no failure in our files."""
    report = run_file(VECTORS / f"{name}.json")
    assert report.failures == []
    assert report.passed > 0


AES = _load("aes_cbc_256_embediv")


@pytest.mark.parametrize("case", AES["cases"], ids=lambda c: c["iv_hex"][:8])
def test_aes_vector_direct(case: dict) -> None:
    """encrypt_embediv with the vector key and IV reproduces the original blob, and back."""
    if "plaintext_generator" in case:
        data = files_crypto.generate_plaintext(case["plaintext_generator"])
    else:
        data = bytes.fromhex(case["plaintext_hex"])
    blob = base64.b64decode(case["blob_b64"])
    key = bytes.fromhex(case["key_hex"])
    assert aes.encrypt_embediv(key, data, bytes.fromhex(case["iv_hex"])) == blob
    assert aes.decrypt_embediv(key, blob) == data


@pytest.mark.parametrize("case", AES["negative_cases"], ids=lambda c: c["what"][:30])
def test_aes_negative_vector(case: dict) -> None:
    """Blobs the original Java decryptor rejects raise our generic DecryptionError."""
    assert case["original_java_decrypt_fails"]
    with pytest.raises(DecryptionError, match="^message could not be decrypted$"):
        aes.decrypt_embediv(bytes.fromhex(case["key_hex"]), base64.b64decode(case["blob_b64"]))


RSA_AES = _load("rsa_aes_cbc_256_embediv")


@pytest.mark.parametrize(
    "case",
    RSA_AES["cases"] + RSA_AES["legacy_v0"],
    ids=lambda c: f"{c['key_id']}-{c['blob_b64'][8:16]}",
)
def test_rsa_aes_vector_direct(case: dict, vector_keys: dict) -> None:
    """rsaaes.decrypt opens every original v1 and v0 blob, short W included."""
    if "plaintext_generator" in case:
        data = files_crypto.generate_plaintext(case["plaintext_generator"])
    else:
        data = bytes.fromhex(case["plaintext_hex"])
    assert rsaaes.decrypt(vector_keys[case["key_id"]], base64.b64decode(case["blob_b64"])) == data


PBKDF2 = _load("pbkdf2")


@pytest.mark.parametrize("case", PBKDF2["cases"], ids=lambda c: c["password_utf8_hex"][:16])
def test_pbkdf2_vector_direct(case: dict) -> None:
    """CryptoKey and VerificationKey match the web client's for every vector password."""
    assert pbkdf.crypto_key(case["password"]).hex() == case["crypto_key_hex"]
    assert pbkdf.verification_key(case["password"]).hex() == case["verification_key_hex"]
    variant = case.get("java_desktop_variant")
    if variant:
        assert pbkdf.crypto_key(case["password"], variant="java-desktop").hex() == variant["crypto_key_hex"]
