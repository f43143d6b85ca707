"""``--workers N``: the usable cores by default, 0 for sealing in the main process, and a bad value refused
with an error naming the option."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from twisted.python import usage

from tests.support.options import parse


def test_the_default_is_one_worker_per_usable_core(tmp_path: Path) -> None:
    """Without --workers there is one worker per core this process may run on (its CPU affinity)."""
    assert parse(tmp_path).delivery_workers == len(os.sched_getaffinity(0))


def test_zero_keeps_sealing_in_the_main_process(tmp_path: Path) -> None:
    """--workers 0 asks for no worker processes; --workers 3 for three."""
    assert parse(tmp_path, "--workers", "0").delivery_workers == 0
    assert parse(tmp_path, "--workers", "3").delivery_workers == 3


@pytest.mark.parametrize("value", ["-1", "two", "257", "1.5", ""])
def test_a_bad_count_is_refused_naming_the_option(tmp_path: Path, value: str) -> None:
    """A negative, fractional, non-numeric or too large count is a usage error that names --workers."""
    with pytest.raises(usage.UsageError, match="--workers must be a whole number"):
        parse(tmp_path, "--workers", value)
