"""Read a process's memory and CPU figures from /proc (Linux): resident set, its peak, and CPU seconds."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

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


def reset_tree_peak(pid: int) -> bool:
    """``reset_peak`` for ``pid`` and each of its live children (the appliance's delivery workers)."""
    return all([reset_peak(child) for child in child_pids(pid)] + [reset_peak(pid)])


def tree_peak_rss_bytes(pid: int) -> int:
    """The peak RSS of ``pid`` plus those of its live children (a child replaced meanwhile is not counted)."""
    total = peak_rss_bytes(pid)
    for child in child_pids(pid):
        with contextlib.suppress(OSError, LookupError):
            total += peak_rss_bytes(child)
    return total


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time the process has used (all its threads)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        fields = stat.read().rpartition(")")[2].split()
    # After the command name: state is field 3, utime 14 and stime 15 (1-based, in proc(5)).
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def _stat_fields(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        return stat.read().rpartition(")")[2].split()


def child_pids(pid: int) -> list[int]:
    """The live child processes of ``pid`` (e.g. the appliance's delivery workers), from each thread's children."""
    found: set[int] = set()
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as f:
                found.update(int(child) for child in f.read().split())
    return sorted(found)


@dataclass(frozen=True)
class CpuSnapshot:
    """CPU seconds of a process, of each live child, and of its children already waited for."""

    main_s: float
    children_s: dict[int, float]
    reaped_children_s: float


def cpu_snapshot(pid: int) -> CpuSnapshot:
    """Read the main process's and its children's user plus system CPU time now."""
    fields = _stat_fields(pid)
    main = (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS
    # cutime and cstime (fields 16, 17): the CPU of children that ended and were waited for.
    reaped = (int(fields[13]) + int(fields[14])) / _CLOCK_TICKS
    children: dict[int, float] = {}
    for child in child_pids(pid):
        with contextlib.suppress(OSError):
            child_fields = _stat_fields(child)
            children[child] = (int(child_fields[11]) + int(child_fields[12])) / _CLOCK_TICKS
    return CpuSnapshot(main, children, reaped)


def cpu_split(before: CpuSnapshot, after: CpuSnapshot) -> tuple[float, float]:
    """(main, children) CPU seconds spent between two snapshots; a child replaced in between still counts."""
    live = sum(cpu - before.children_s.get(child, 0.0) for child, cpu in after.children_s.items())
    # A child that ended in between: its whole life arrives in the reaped total; what it had used before is
    # subtracted. (A child that ended unreaped is lost; the appliance reaps its workers at once.)
    gone = sum(cpu for child, cpu in before.children_s.items() if child not in after.children_s)
    reaped = after.reaped_children_s - before.reaped_children_s - gone
    return after.main_s - before.main_s, max(0.0, live + reaped)


def tree_cpu_seconds(pid: int) -> float:
    """User plus system CPU of ``pid`` and every descendant, including those that ended and were reaped.

    A process's ``cutime``/``cstime`` hold the whole lives of the children it has waited for (theirs
    included), so this sum over the live tree only grows: two readings differ by what the tree spent in
    between, however many processes came and went (one that ended but is not yet reaped is missing until
    its parent waits for it).
    """
    total = 0.0
    pending, seen = [pid], set[int]()
    while pending and len(seen) < 100_000:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        with contextlib.suppress(OSError):
            fields = _stat_fields(current)
            total += sum(int(value) for value in fields[11:15]) / _CLOCK_TICKS
            pending.extend(child_pids(current))
    return total
