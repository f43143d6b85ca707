"""Shared fixtures for the crypto tests: the vector keys, loaded once per session."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from mailiverse.crypto import keys

VECTORS = Path(__file__).resolve().parent.parent / "vectors"


def load_vectors(name: str) -> dict[str, Any]:
    return json.loads((VECTORS / f"{name}.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def vector_keys() -> dict[str, rsa.RSAPrivateKey]:
    """Every private key of rsa_keys.json by id."""
    return {
        entry["id"]: keys.load_private_key(base64.b64decode(entry["private_pkcs8_der_b64"]))
        for entry in load_vectors("rsa_keys")["keys"]
    }


@pytest.fixture(scope="session")
def private_key(vector_keys: dict[str, rsa.RSAPrivateKey]) -> rsa.RSAPrivateKey:
    """A 2048-bit key for round trips."""
    return vector_keys["java-user-key"]


@pytest.fixture(scope="session")
def other_key(vector_keys: dict[str, rsa.RSAPrivateKey]) -> rsa.RSAPrivateKey:
    """A second, unrelated 2048-bit key (for wrong-key tests)."""
    return vector_keys["java-server-key"]
