"""Our converter against every recorded JavaMail reference document (no Java needed at test time)."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from mailiverse.mime.twin import convert

_DATA = json.loads((Path(__file__).resolve().parent / "expected.json").read_text(encoding="ascii"))
_CASES: list[dict[str, Any]] = _DATA["cases"]
_INPUTS = _DATA["inputs"]


def _raw(case: dict[str, Any]) -> bytes:
    raw = base64.b64decode(case["mime_b64"])
    assert hashlib.sha256(raw).hexdigest() == case["mime_sha256"]
    return raw


@pytest.mark.parametrize("case", _CASES, ids=[c["name"] for c in _CASES])
def test_matches_recorded_expectation(case: dict[str, Any]) -> None:
    """The twin equals the JavaMail reference, or its documented JavaMail 1.4 variant."""
    got = json.loads(convert(_raw(case), original_path=_INPUTS["original_path"], written_ms=_INPUTS["written_ms"]))
    assert got == case["expected"]


@pytest.mark.parametrize("case", [c for c in _CASES if c["status"] == "known-difference"], ids=lambda c: c["name"])
def test_known_differences_are_explained(case: dict[str, Any]) -> None:
    """Every expectation that departs from the 1.6.5 reference carries a reason and really differs."""
    assert case["expected"] != case["reference_javamail_1_6_5"]
    assert len(case.get("reason", "")) > 20


def test_corpus_covers_cpython_and_crafted_messages() -> None:
    """The recorded corpus holds every CPython email test message and the crafted edge cases."""
    names = [c["name"] for c in _CASES]
    assert len(names) == len(set(names))
    assert sum(n.startswith("cpython/msg_") for n in names) >= 48
    assert sum(n.startswith("crafted/") for n in names) >= 200
    matches = sum(c["status"] == "match" for c in _CASES)
    assert matches > 0.85 * len(_CASES)
