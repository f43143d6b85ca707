"""Tests for as_clock, which accepts a reactor, a callable or nothing as the time source."""

from __future__ import annotations

import time

import pytest
from twisted.internet.task import Clock

from mailiverse.auth.clock import as_clock


def test_reactor_time_is_followed(clock: Clock) -> None:
    """An IReactorTime provider is read through its seconds() method, live."""
    now = as_clock(clock)
    before = now()
    clock.advance(5)
    assert now() == before + 5


def test_callable_is_used() -> None:
    """A plain callable returning seconds is used as is."""
    assert as_clock(lambda: 42)() == 42.0


def test_default_is_wall_clock() -> None:
    """With no source the wall clock is used, since session times are stored."""
    assert abs(as_clock(None)() - time.time()) < 5


def test_garbage_is_refused() -> None:
    """Something that is neither a reactor nor callable is a TypeError."""
    with pytest.raises(TypeError):
        as_clock(12)  # type: ignore[arg-type]
