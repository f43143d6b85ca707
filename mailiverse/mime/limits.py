"""Hard limits that bound the work, memory and time of one MIME-to-JSON conversion."""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """Ceilings on one conversion; breaching any of them yields the limit error document."""

    max_size: int = 64 * 1024 * 1024
    max_depth: int = 50
    max_parts: int = 5_000
    max_headers: int = 2_000
    max_header_bytes: int = 8 * 1024 * 1024
    max_header_line: int = 1024 * 1024
    max_seconds: float = 20.0


DEFAULT_LIMITS = Limits()


class MimeLimitError(Exception):
    """A hard limit was breached; ``str()`` names the limit and is safe to store."""


class Budget:
    """Running counters for one conversion, checked inside every loop."""

    __slots__ = ("limits", "deadline", "parts", "header_bytes", "_ticks")

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.deadline = time.monotonic() + limits.max_seconds
        self.parts = 0
        self.header_bytes = 0
        self._ticks = 0

    def tick(self) -> None:
        """Cheap periodic wall-clock check."""
        self._ticks += 1
        if self._ticks & 0x3F == 0:
            self.check_time()

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise MimeLimitError(f"message exceeds the conversion time limit ({self.limits.max_seconds:g} s)")

    def add_part(self) -> None:
        self.parts += 1
        if self.parts > self.limits.max_parts:
            raise MimeLimitError(f"message exceeds the part count limit ({self.limits.max_parts})")

    def check_depth(self, depth: int) -> None:
        if depth > self.limits.max_depth:
            raise MimeLimitError(f"message exceeds the nesting depth limit ({self.limits.max_depth})")

    def add_header_line(self, length: int) -> None:
        if length > self.limits.max_header_line:
            raise MimeLimitError(f"message exceeds the header line length limit ({self.limits.max_header_line} bytes)")
        self.header_bytes += length
        if self.header_bytes > self.limits.max_header_bytes:
            raise MimeLimitError(f"message exceeds the total header size limit ({self.limits.max_header_bytes} bytes)")

    def check_header_count(self, count: int) -> None:
        if count > self.limits.max_headers:
            raise MimeLimitError(f"message exceeds the header count limit ({self.limits.max_headers} per entity)")
