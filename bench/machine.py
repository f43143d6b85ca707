"""What a benchmark records about the machine it ran on: CPU, cores, Python, the commit, the load average."""

from __future__ import annotations

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
