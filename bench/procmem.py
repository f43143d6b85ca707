"""Read a process's memory and CPU figures from /proc (Linux): resident set, its peak, and CPU seconds."""

from __future__ import annotations

import contextlib
import os

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _status_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise LookupError(f"{field} not in /proc/{pid}/status")


def rss_bytes(pid: int) -> int:
    """The current resident set size."""
    return _status_kib(pid, "VmRSS") * 1024


def peak_rss_bytes(pid: int) -> int:
    """The peak resident set size since start or the last ``reset_peak``."""
    return _status_kib(pid, "VmHWM") * 1024


def reset_peak(pid: int) -> bool:
    """Reset the kernel's peak-RSS mark to the current RSS (``clear_refs`` 5); False where not allowed."""
    with contextlib.suppress(OSError), open(f"/proc/{pid}/clear_refs", "w", encoding="ascii") as f:
        f.write("5")
        return True
    return False


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used (all its threads)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rpartition(")")[2].split()
    # After the command name: state is field 3, utime 14 and stime 15 (1-based, in proc(5)).
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
