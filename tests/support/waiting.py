"""Waiting in pytest-twisted tests without blocking the reactor, and an in-memory sink for sealed objects."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import IO

from twisted.internet import reactor
from twisted.internet.defer import Deferred


def sleep(seconds: float) -> Deferred[None]:
    """A Deferred that fires after ``seconds`` of the running reactor's time."""
    d: Deferred[None] = Deferred()
    reactor.callLater(seconds, d.callback, None)  # type: ignore[attr-defined]
    return d


async def until(condition: Callable[[], object], timeout: float = 30.0) -> None:
    """Return once ``condition()`` is true, checking every 50 ms; fail after ``timeout`` seconds."""
    waited = 0.0
    while not condition():
        assert waited < timeout, "timed out"
        await sleep(0.05)
        waited += 0.05


class MemorySink:
    """A ``sealing.ObjectSink`` keeping each sealed object in memory, rewound when complete."""

    def __init__(self) -> None:
        self.objects: list[IO[bytes]] = []

    def begin(self) -> IO[bytes]:
        self.objects.append(io.BytesIO())
        return self.objects[-1]

    def end(self, out: IO[bytes]) -> None:
        out.seek(0)
