"""``python -m mailiverse.conformance``: output shape, exit status, and nothing skipped silently."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

VECTORS = Path(__file__).parent / "vectors"
LINE = re.compile(r"^(?P<name>[\w.-]+): (?P<p>\d+) passed, (?P<f>\d+) failed$")


def run(*dirs: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailiverse.conformance", *map(str, dirs)], capture_output=True, text=True, timeout=300
    )


def test_public_vectors_all_pass() -> None:
    """Every public vector file has its line, every case passes, the last line sums them and the exit is 0."""
    result = run(VECTORS)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    files = sorted(p.stem for p in VECTORS.glob("*.json"))
    per_file = [LINE.match(line) for line in lines[:-1]]
    assert all(per_file), lines
    assert [m["name"] for m in per_file if m] == files
    assert all(m["f"] == "0" and int(m["p"]) > 0 for m in per_file if m)
    total = sum(int(m["p"]) for m in per_file if m)
    assert lines[-1] == f"{total} passed, 0 failed"


def test_unknown_file_and_section_fail(tmp_path: Path) -> None:
    """A file nobody understands, or an extra section, fails the run instead of being skipped."""
    (tmp_path / "mystery.json").write_text(json.dumps({"description": "?", "cases": [{}]}))
    doc = json.loads((VECTORS / "pbkdf2.json").read_text())
    doc["surprise_cases"] = [{"x": 1}]
    (tmp_path / "pbkdf2.json").write_text(json.dumps(doc))
    result = run(tmp_path)
    assert result.returncode != 0
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "mystery: 0 passed, 1 failed"
    assert re.match(r"^pbkdf2: \d+ passed, 1 failed$", lines[1])
    assert re.match(r"^\d+ passed, 2 failed$", lines[-1])


def test_a_wrong_expected_value_is_a_failure(tmp_path: Path) -> None:
    """Changing one expected value in a vector makes exactly that case fail."""
    for name in ("aes_cbc_256_embediv.json", "rsa_keys.json"):
        shutil.copy(VECTORS / name, tmp_path / name)
    doc = json.loads((tmp_path / "aes_cbc_256_embediv.json").read_text())
    blob = bytearray(doc["cases"][0]["blob_b64"].encode())
    blob[20] = ord("A") if blob[20] != ord("A") else ord("B")
    doc["cases"][0]["blob_b64"] = blob.decode()
    (tmp_path / "aes_cbc_256_embediv.json").write_text(json.dumps(doc))
    result = run(tmp_path)
    assert result.returncode == 1
    first = LINE.match(result.stdout.splitlines()[0])
    assert first and first["name"] == "aes_cbc_256_embediv" and int(first["f"]) >= 1


def test_missing_directory_is_an_error(tmp_path: Path) -> None:
    """A directory that does not exist is reported and the exit status is non-zero."""
    result = run(tmp_path / "nope")
    assert result.returncode != 0 and "no such directory" in result.stderr
