"""Shared fixtures for the auth tests: a fake clock, a server secret, a synchronous coroutine runner."""

from __future__ import annotations

import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure

T = TypeVar("T")


@pytest.fixture
def clock() -> Clock:
    """A deterministic Twisted clock starting at a realistic epoch time."""
    fake = Clock()
    fake.advance(1_700_000_000)
    return fake


@pytest.fixture
def server_secret() -> bytes:
    """A fresh random server secret for each test."""
    return os.urandom(32)


@pytest.fixture
def run() -> Callable[[Coroutine[Any, Any, T]], T]:
    """Run a coroutine that never waits on I/O through Deferred.fromCoroutine and return its result."""

    def resolve(coroutine: Coroutine[Any, Any, T]) -> T:
        results: list[object] = []
        Deferred.fromCoroutine(coroutine).addBoth(results.append)
        assert results, "the coroutine did not finish synchronously"
        result = results[0]
        if isinstance(result, Failure):
            result.raiseException()
        return result  # type: ignore[return-value]

    return resolve
