"""Looking for a canary where a server keeps things: files (databases, logs, spools) and a live process's memory.

A canary is a distinctive string put in a message's subject and body. The scans look for its bytes as they are,
and for its base64 forms at each of the three alignments (a JSON body or a MIME part carrying the plaintext as
base64 would show it that way); memory is read from ``/proc/PID/mem`` through the readable ranges of
``/proc/PID/maps``, for the process and all its descendants (the delivery workers). Reading another process's
memory needs root or the same user with ptrace permission, which the test's machine gives.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from pathlib import Path

_RANGE = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) (r)")
#: Skipped: ranges larger than this (reserved address space, not data a process wrote).
MAX_RANGE_BYTES = 1 << 30


def forms(canary: bytes) -> list[bytes]:
    """The canary's bytes, and the stable core of its base64 at each alignment."""
    found = [canary]
    for pad in range(3):
        encoded = base64.b64encode(b"\0" * pad + canary)
        found.append(encoded[4:-4])
    return found


def files_with(root: Path, canary: bytes) -> list[Path]:
    """Every file under ``root`` that holds a form of the canary."""
    wanted = forms(canary)
    hits = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if any(form in data for form in wanted):
            hits.append(path)
    return hits


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                queue += [int(child) for child in (task / "children").read_text().split()]
            except (FileNotFoundError, ProcessLookupError):
                continue
    return sorted(set(found))


def _ranges(pid: int) -> Iterator[tuple[int, int]]:
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        match = _RANGE.match(line)
        if match and match.group(3) == "r" and "[vvar]" not in line and "[vsyscall]" not in line:
            start, end = int(match.group(1), 16), int(match.group(2), 16)
            if end - start <= MAX_RANGE_BYTES:
                yield start, end


def memory_with(pid: int, canary: bytes) -> list[int]:
    """The processes (``pid`` and its descendants) whose memory holds a form of the canary; how many bytes
    were read is in ``memory_read``."""
    wanted = forms(canary)
    hits = []
    for process in descendants(pid):
        if _process_holds(process, wanted):
            hits.append(process)
    return hits


def memory_read(pid: int) -> int:
    """How many bytes of memory the scan of ``pid`` and its descendants reads (a scan that read nothing proves
    nothing)."""
    total = 0
    for process in descendants(pid):
        total += sum(end - start for start, end in _ranges(process))
    return total


def process_holds(pid: int, canary: bytes) -> bool:
    """Whether the memory of this one process holds a form of the canary (a positive control for the scan)."""
    return _process_holds(pid, forms(canary))


def _process_holds(pid: int, wanted: list[bytes]) -> bool:
    overlap = max(len(w) for w in wanted)
    try:
        mem = open(f"/proc/{pid}/mem", "rb", buffering=0)  # noqa: SIM115 - closed below
    except (FileNotFoundError, ProcessLookupError):
        return False
    try:
        for start, end in _ranges(pid):
            position, tail = start, b""
            while position < end:
                size = min(1 << 20, end - position)
                try:
                    mem.seek(position)
                    chunk = mem.read(size)
                except (OSError, ValueError):
                    break
                window = tail + chunk
                if any(form in window for form in wanted):
                    return True
                tail = window[-overlap:]
                position += size
    finally:
        mem.close()
    return False


__all__ = ["descendants", "files_with", "forms", "memory_read", "memory_with", "process_holds"]
