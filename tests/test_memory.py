"""mailiverse/memory.py: the heap's free pages go back to the system at start, shortly after, and periodically."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from mailiverse import memory


def test_release_free_memory_trims_with_glibc() -> None:
    """On this (glibc) system malloc_trim exists and is called; a large freed block is returned."""
    blocks = [bytearray(256 * 1024) for _ in range(64)]  # 16 MiB on the heap, then freed
    del blocks
    assert memory.release_free_memory() is True


def test_trim_service_schedule(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[float] = []
    clock = Clock()
    monkeypatch.setattr(memory, "release_free_memory", lambda: calls.append(clock.seconds()) or True)
    service = memory.TrimService(clock)
    service.call = (memory.release_free_memory, (), {})  # TimerService kept the function it was given
    service.startService()
    clock.advance(memory.FIRST_TRIM_S)
    clock.advance(memory.TRIM_INTERVAL_S - memory.FIRST_TRIM_S)
    assert calls == [0.0, memory.FIRST_TRIM_S, memory.TRIM_INTERVAL_S]
    service.stopService()
    clock.advance(memory.TRIM_INTERVAL_S * 3)
    assert len(calls) == 3


def test_trim_after_a_burst_of_deliveries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Deliveries (``activity``) move the idle trim on; it comes once, ``IDLE_TRIM_S`` after the last of them,
    and never after the service stopped."""
    calls: list[float] = []
    clock = Clock()
    monkeypatch.setattr(memory, "release_free_memory", lambda: calls.append(clock.seconds()) or True)
    service = memory.TrimService(clock)
    service.call = (memory.release_free_memory, (), {})
    service.startService()
    clock.advance(memory.FIRST_TRIM_S)
    calls.clear()
    for _ in range(5):  # a burst: one delivery every half idle period
        service.activity()
        clock.advance(memory.IDLE_TRIM_S / 2)
    assert calls == []
    clock.advance(memory.IDLE_TRIM_S / 2 - 0.01)  # just before IDLE_TRIM_S after the last delivery
    assert calls == []
    clock.advance(0.02)
    assert len(calls) == 1
    service.activity()
    service.stopService()
    clock.advance(memory.IDLE_TRIM_S * 3)
    assert len(calls) == 1
