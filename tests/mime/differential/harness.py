"""Differential harness: runs the JavaMail reference (TwinReference.java) and our converter over
the same messages, compares the JSON values and, with ``--record``, writes ``expected.json``.

Java is needed only here (for regeneration); the pytest in this directory reads ``expected.json``.

    .venv/bin/python tests/mime/differential/harness.py [--vectors] [--record] [--show NAME]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from cases import CASES, KNOWN_DIFFERENCES  # noqa: E402

from mailiverse.mime.twin import convert  # noqa: E402

WRITTEN_MS = "1382191391532"
ORIGINAL = "Mail/In/1382191391532_5108829471538001234"
CLASSPATH_JARS = ("/usr/share/java/javax.mail.jar", "/usr/share/java/javax.activation.jar")
EXPECTED = HERE / "expected.json"


def cpython_data_dir() -> Path:
    """CPython's email test messages directory for the running interpreter."""
    return Path(sysconfig.get_paths()["stdlib"]) / "test" / "test_email" / "data"


def collect(include_vectors: bool) -> list[tuple[str, str, bytes]]:
    """(name, source, raw bytes) for every message to compare."""
    found: list[tuple[str, str, bytes]] = []
    data = cpython_data_dir()
    for path in sorted(data.glob("*.txt")):
        found.append((f"cpython/{path.name}", f"cpython-test-data:{path.name}", path.read_bytes()))
    for name, raw in CASES.items():
        found.append((f"crafted/{name}", "crafted", raw))
    if include_vectors:
        vectors = json.loads((ROOT / "tests" / "vectors" / "mime_json.json").read_text(encoding="utf-8"))
        for case in vectors["cases"]:
            found.append((f"vector/{case['name']}", "public-vector", base64.b64decode(case["mime_b64"])))
    return found


def run_reference(messages: list[tuple[str, str, bytes]]) -> list[Any]:
    """The JavaMail 1.6.5 reference documents, one per message."""
    with tempfile.TemporaryDirectory() as tmp:
        classes = Path(tmp) / "classes"
        classes.mkdir()
        cp = ":".join(CLASSPATH_JARS)
        subprocess.run(["javac", "-d", str(classes), "-cp", cp, str(HERE / "TwinReference.java")], check=True)
        files = []
        for i, (_, _, raw) in enumerate(messages):
            f = Path(tmp) / f"m{i:04d}.eml"
            f.write_bytes(raw)
            files.append(str(f))
        env = dict(os.environ, TZ="UTC", LC_ALL="C.UTF-8")
        proc = subprocess.run(
            ["java", "-Duser.timezone=UTC", "-cp", f"{cp}:{classes}", "TwinReference", WRITTEN_MS, ORIGINAL, *files],
            check=True,
            capture_output=True,
            env=env,
        )
    lines = proc.stdout.decode("ascii").splitlines()
    assert len(lines) == len(messages), (len(lines), len(messages))
    return [json.loads(line) for line in lines]


def ours(raw: bytes) -> Any:
    return json.loads(convert(raw, original_path=ORIGINAL, written_ms=WRITTEN_MS))


def diff(a: Any, b: Any, path: str = "") -> list[str]:
    """Human-readable differences between two JSON values (Base64 strings shown decoded)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for k in sorted(set(a) | set(b)):
            if k not in a:
                out.append(f"{path}/{k}: missing in ours, reference {_show(b[k])}")
            elif k not in b:
                out.append(f"{path}/{k}: extra in ours {_show(a[k])}")
            else:
                out += diff(a[k], b[k], f"{path}/{k}")
        return out
    if isinstance(a, list) and isinstance(b, list):
        out = []
        if len(a) != len(b):
            out.append(f"{path}: length ours {len(a)} reference {len(b)}")
        for i, (x, y) in enumerate(zip(a, b)):
            out += diff(x, y, f"{path}[{i}]")
        return out
    if a != b:
        return [f"{path}: ours {_show(a)} reference {_show(b)}"]
    return []


def _show(v: Any) -> str:
    if isinstance(v, str):
        try:
            dec = base64.b64decode(v, validate=True).decode("utf-8")
            if v and len(v) % 4 == 0:
                return repr(v[:200]) + " (b64 " + repr(dec[:200]) + ")"
        except Exception:  # noqa: BLE001 - display only
            pass
        return repr(v[:300])
    return repr(v)[:300]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vectors", action="store_true", help="also compare the public vectors")
    ap.add_argument("--record", action="store_true", help="write expected.json")
    ap.add_argument("--show", help="print both documents for one message name")
    args = ap.parse_args()
    messages = collect(args.vectors)
    refs = run_reference(messages)
    records = []
    mismatches = 0
    for (name, source, raw), ref in zip(messages, refs):
        got = ours(raw)
        known = KNOWN_DIFFERENCES.get(name)
        expected = ref
        if known is not None:
            expected = got if known["expected"] is None else known["expected"](ref)
        problems = diff(got, expected)
        status = "match" if got == ref else ("known-difference" if not problems else "MISMATCH")
        if problems:
            mismatches += 1
        print(f"{status:16} {name}")
        for p in problems[:12]:
            print("      ", p)
        if args.show == name:
            print(json.dumps(ref, indent=1))
            print(json.dumps(got, indent=1))
        rec: dict[str, Any] = {
            "name": name,
            "source": source,
            "mime_b64": base64.b64encode(raw).decode("ascii"),
            "mime_sha256": hashlib.sha256(raw).hexdigest(),
            "reference_javamail_1_6_5": ref,
            "expected": expected,
            "status": "match" if expected == ref else "known-difference",
        }
        if known is not None:
            rec["reason"] = known["reason"]
        records.append(rec)
    print(f"{len(messages)} messages, {mismatches} mismatching")
    if args.record:
        doc = {
            "description": "Reference JSON twin documents produced by TwinReference.java on Debian JavaMail 1.6.5 "
            "(OpenJDK 17), and the value our converter must produce (equal to the reference unless the "
            "case is a documented JavaMail 1.4 vs 1.6.5 difference). Regenerate with regenerate.sh.",
            "inputs": {"written_ms": WRITTEN_MS, "original_path": ORIGINAL},
            "cases": [r for r in records if not r["name"].startswith("vector/")],
        }
        EXPECTED.write_text(json.dumps(doc, indent=1, ensure_ascii=True) + "\n", encoding="ascii")
    return 1 if mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
