"""Coverage-guided fuzzing with atheris (libFuzzer) on every target, from the committed corpus."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.fuzz_targets import CORPUS, TARGETS

ROOT = Path(__file__).resolve().parents[2]
QUICK_SECONDS = 3
LONG_SECONDS = 45

pytestmark = pytest.mark.skipif(
    subprocess.run([sys.executable, "-c", "import atheris"], capture_output=True).returncode != 0,
    reason="atheris is not installed (pip install atheris)",
)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_atheris_finds_no_crash(name: str, tmp_path: Path, record_property) -> None:
    """libFuzzer runs the target from its corpus for a fixed time: no crash, no leak, no input over the time limit."""
    seconds = LONG_SECONDS if os.environ.get("LONG") else QUICK_SECONDS
    if not os.environ.get("LONG") and name not in ("mime_twin", "mail_object"):
        pytest.skip("the quick run fuzzes the two main parsers; make test-long fuzzes all")
    scratch = tmp_path / "new"
    scratch.mkdir()
    cmd = [
        sys.executable,
        "-m",
        "tests.fuzz.atheris_main",
        name,
        str(scratch),
        str(CORPUS / name),
        f"-max_total_time={seconds}",
        "-timeout=15",
        "-rss_limit_mb=2048",
        "-max_len=65536",
        f"-artifact_prefix={tmp_path}/",
        "-print_final_stats=1",
    ]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=seconds + 120)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    runs = re.search(r"stat::number_of_executed_units:\s*(\d+)", log)
    cov = re.findall(r"cov: (\d+)", log)
    figures = f"{name}: {runs.group(1) if runs else '?'} execs, cov {cov[-1] if cov else '?'} in {seconds} s"
    record_property("atheris", figures)
    print(figures)
    assert runs and int(runs.group(1)) > 0
