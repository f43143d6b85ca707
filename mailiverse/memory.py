"""Giving memory the appliance freed back to the system (glibc's ``malloc_trim``).

Start-up reads and parses far more than the running appliance keeps (configuration, certificates, the schema
check, every module's import-time work); glibc keeps the freed pages for later ``malloc`` calls unless asked
to return them. On a Raspberry Pi that difference is worth a few megabytes, so the appliance trims once
shortly after it starts, then every few minutes, and a moment after a burst of deliveries ends
(``TrimService.activity``: on a slow or busy machine start-up may still be under way at the first trim, and a
delivery parses, seals and writes far more than it keeps). Elsewhere (musl, macOS) this is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable
from typing import Any

from twisted.application.internet import TimerService

#: Seconds between trims after the first (which comes ``FIRST_TRIM_S`` after start).
TRIM_INTERVAL_S = 300.0
FIRST_TRIM_S = 2.0
#: Quiet seconds after the last delivery before the heap is trimmed (under steady load: never).
IDLE_TRIM_S = 1.0


def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim: Any = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim  # type: ignore[no-any-return]


_TRIM = _malloc_trim()


def release_free_memory() -> bool:
    """Return the heap's free pages to the system; whether this C library can (glibc)."""
    if _TRIM is None:
        return False
    _TRIM(0)
    return True


class TrimService(TimerService):
    """Trims at start, ``FIRST_TRIM_S`` after it, then every ``TRIM_INTERVAL_S`` seconds."""

    def __init__(self, reactor: Any) -> None:
        super().__init__(TRIM_INTERVAL_S, release_free_memory)
        self.clock = reactor
        self._reactor = reactor
        self._first: Any = None
        self._idle: Any = None

    def startService(self) -> None:
        # TimerService trims at once; one more trim a moment later returns what the services freed as they
        # started (listeners, the first database connections).
        super().startService()
        self._first = self._reactor.callLater(FIRST_TRIM_S, release_free_memory)

    def activity(self) -> None:
        """A delivery was stored: trim once the appliance has been quiet for ``IDLE_TRIM_S`` (each call moves it on)."""
        if not self.running:
            return
        if self._idle is not None and self._idle.active():
            self._idle.reset(IDLE_TRIM_S)
        else:
            self._idle = self._reactor.callLater(IDLE_TRIM_S, release_free_memory)

    def stopService(self) -> Any:
        for call in (self._first, self._idle):
            if call is not None and call.active():
                call.cancel()
        return super().stopService()


__all__ = ["FIRST_TRIM_S", "IDLE_TRIM_S", "TRIM_INTERVAL_S", "TrimService", "release_free_memory"]
