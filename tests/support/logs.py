"""Capturing the events Twisted's logger emits, to check what a log line holds (and what it must not)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from twisted.logger import globalLogPublisher


@contextmanager
def captured() -> Iterator[list[dict[str, Any]]]:
    """Every log event emitted inside the block."""
    events: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(events.append)
    try:
        yield events
    finally:
        globalLogPublisher.removeObserver(events.append)
