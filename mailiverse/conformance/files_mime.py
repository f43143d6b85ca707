"""Conformance checker for ``mime_json``: the MIME to JSON twin conversion (docs/protocol.md §12)."""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from collections.abc import Iterator
from typing import Any

from mailiverse.conformance.core import Case, NotUnderstood, checker


def _run_case(case: dict[str, Any]) -> None:
    from mailiverse.mime.twin import convert

    raw = base64.b64decode(case["mime_b64"], validate=True)
    assert len(raw) == int(case["mime_len"]), "mime_len does not match the decoded input"
    assert hashlib.sha256(raw).hexdigest() == case["mime_sha256"].lower(), "mime_sha256 mismatch"
    inputs = case["inputs"]
    out = convert(raw, original_path=inputs["original_path"], written_ms=inputs["written_ms"])
    expected_text: str = case["json_text"]
    got = json.loads(out.decode("utf-8"))
    want = json.loads(expected_text)
    if got != want:
        keys = sorted(set(got) | set(want)) if isinstance(got, dict) and isinstance(want, dict) else []
        differing = [k for k in keys if got.get(k) != want.get(k)]
        raise AssertionError(f"JSON value differs (members: {', '.join(differing) or 'shape'})")
    is_error = "addresses" not in got and "headers" in got
    result = case.get("result")
    if result not in ("normal", "error_document"):
        raise NotUnderstood(f"unknown result kind {result!r}")
    assert is_error == (result == "error_document"), f"expected a {result} document"


def _run_bytes(case: dict[str, Any]) -> None:
    """The optional extra: a normal document is byte-identical to json_text."""
    from mailiverse.mime.twin import convert

    raw = base64.b64decode(case["mime_b64"], validate=True)
    inputs = case["inputs"]
    out = convert(raw, original_path=inputs["original_path"], written_ms=inputs["written_ms"])
    assert out == case["json_text"].encode("utf-8"), "values equal but bytes differ from json_text"
    if "json_sha256" in case:
        assert hashlib.sha256(out).hexdigest() == case["json_sha256"].lower(), "json_sha256 mismatch"


@checker("mime_json", sections={"cases"})
def mime_json(doc: dict[str, Any]) -> Iterator[Case]:
    cases = doc.get("cases")
    if not isinstance(cases, list):
        raise NotUnderstood("cases is not a list")
    for index, case in enumerate(cases):
        label = str(case.get("name", f"case {index}")) if isinstance(case, dict) else f"case {index}"
        yield Case(label, functools.partial(_run_case, case))
        if isinstance(case, dict) and case.get("result") == "normal":
            yield Case(f"{label} (exact bytes)", functools.partial(_run_bytes, case))
