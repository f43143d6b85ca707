"""What a benchmark records about the machine it ran on: CPU, cores, Python, the commit, the load average."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def basics() -> dict[str, Any]:
    """The CPU model, cores, Python version, short commit and load average (1 / 5 / 15 min) now."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    cpu = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), platform.processor())
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "cpu_model": cpu,
        "cores": os.cpu_count() or 0,
        "python": platform.python_version(),
        "commit": commit,
        "load_average": " / ".join(f"{value:.1f}" for value in os.getloadavg()),
    }


def results_header(
    benchmark: str, args: Any, results_dir: Path, environment: dict[str, Any]
) -> tuple[Path, dict[str, Any]]:
    """The results file of ``benchmark`` today (``results_dir/<benchmark>-<date>.json``) and the head of what it
    records: the name, the date, ``environment`` (``basics()`` and the benchmark's own facts), the command line's
    settings and the file's path (relative to the checkout where it is inside it)."""
    today = datetime.date.today().isoformat()
    path = results_dir / f"{benchmark}-{today}.json"
    return path, {
        "benchmark": benchmark,
        "date": today,
        "environment": environment,
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "results_file": str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path),
    }
