"""Every public mime_json vector, converted and compared with the original converter's output."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from mailiverse.mime.twin import convert

_VECTORS = json.loads((Path(__file__).resolve().parents[1] / "vectors" / "mime_json.json").read_text(encoding="utf-8"))
_CASES: list[dict[str, Any]] = _VECTORS["cases"]


def _convert(case: dict[str, Any]) -> bytes:
    raw = base64.b64decode(case["mime_b64"])
    assert len(raw) == case["mime_len"]
    assert hashlib.sha256(raw).hexdigest() == case["mime_sha256"]
    inputs = case["inputs"]
    return convert(raw, original_path=inputs["original_path"], written_ms=inputs["written_ms"])


@pytest.mark.parametrize("case", _CASES, ids=[c["name"] for c in _CASES])
def test_vector_values(case: dict[str, Any]) -> None:
    """The twin's JSON value equals the original converter's, error text included."""
    got = json.loads(_convert(case))
    assert got == json.loads(case["json_text"])
    assert ("addresses" not in got) == (case["result"] == "error_document")


@pytest.mark.parametrize("case", _CASES, ids=[c["name"] for c in _CASES])
def test_vector_bytes(case: dict[str, Any]) -> None:
    """The twin's bytes are identical to the original's (org.json escaping, Java 8+ order)."""
    out = _convert(case)
    assert out == case["json_text"].encode("utf-8")
    assert hashlib.sha256(out).hexdigest() == case["json_sha256"]
