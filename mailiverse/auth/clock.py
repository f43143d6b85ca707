"""Turn whatever time source a caller has into one callable returning seconds."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeAlias

from twisted.internet.interfaces import IReactorTime

#: A source of "now" in seconds: a reactor (or ``task.Clock``) or a plain callable.
TimeSource: TypeAlias = "IReactorTime | Callable[[], float] | None"


def as_clock(source: TimeSource) -> Callable[[], float]:
    """Return a zero-argument callable giving the current time in seconds.

    ``None`` means the wall clock (``time.time``): session timestamps are stored and
    must survive a restart, so a monotonic clock would be wrong for them.
    """
    if source is None:
        return time.time
    seconds = getattr(source, "seconds", None)
    if callable(seconds):
        return lambda: float(seconds())
    if callable(source):
        return lambda: float(source())
    raise TypeError("a clock must be an IReactorTime provider or a callable returning seconds")
