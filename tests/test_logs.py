"""The appliance's log level: lines below it never reach an observer, and are dropped before Twisted builds an event."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from twisted.logger import InvalidLogLevelError, LogLevel
from twisted.logger import Logger as TwistedLogger

from mailiverse.logs import DEFAULT_LEVEL, Logger, set_level
from tests.support.logs import captured

LEVELS = list(LogLevel.iterconstants())
MAILIVERSE = Path(__file__).resolve().parents[1] / "mailiverse"


@pytest.fixture(autouse=True)
def default_level() -> Iterator[None]:
    """Each test starts, and leaves the process, at the appliance's default level."""
    set_level(DEFAULT_LEVEL)
    yield
    set_level(DEFAULT_LEVEL)


def one_line_at_each_level(log: Logger) -> None:
    log.debug("a debug line")
    log.info("an info line")
    log.warn("a warn line")
    log.error("an error line")
    log.critical("a critical line")


@pytest.mark.parametrize("threshold", LEVELS, ids=[level.name for level in LEVELS])
def test_the_lines_at_and_above_the_level_reach_the_observer(threshold: LogLevel) -> None:
    """At each level exactly the lines at that level or above are delivered, from a logger made before it was set."""
    log = Logger()
    set_level(threshold)
    with captured() as events:
        one_line_at_each_level(log)
    assert [event["log_level"] for event in events] == [level for level in LEVELS if level >= threshold]


def test_debug_is_dropped_by_default_and_delivered_at_debug() -> None:
    """At the default (info) a debug line is not delivered; after set_level(debug) it is, with its fields."""
    log = Logger()
    with captured() as events:
        log.debug("stored message {key_base}", key_base="k1")
        log.emit(LogLevel.debug, "stored message {key_base}", key_base="k2")
        assert events == []
        set_level(LogLevel.debug)
        log.debug("stored message {key_base}", key_base="k3")
    assert [(event["log_format"], event["key_base"]) for event in events] == [("stored message {key_base}", "k3")]


def test_a_dropped_line_never_enters_twisteds_emit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Below the level Twisted's emit, which builds the event (namespace, source, time), is not even called."""
    entered: list[LogLevel] = []
    monkeypatch.setattr(TwistedLogger, "emit", lambda self, level, format=None, **kwargs: entered.append(level))
    log = Logger()
    log.debug("stored message {key_base}", key_base="k")
    log.emit(LogLevel.debug, "stored message {key_base}", key_base="k")
    assert entered == []
    log.info("an info line")
    assert entered == [LogLevel.info]


def test_a_value_that_is_no_level_is_still_reported() -> None:
    """The level check does not swallow a wrong level: Twisted's emit still logs it as a failure."""
    with captured() as events:
        Logger().emit("loud", "a line")  # type: ignore[arg-type]
    assert len(events) == 1
    assert events[0]["log_level"] is LogLevel.critical
    assert events[0]["log_failure"].check(InvalidLogLevelError)


def test_the_namespace_is_still_the_callers_module() -> None:
    """Made without a namespace, the logger is named after the module that made it, as Twisted's is."""
    assert Logger().namespace == __name__


def test_every_mailiverse_module_logs_through_the_level() -> None:
    """No module of the appliance uses Twisted's Logger directly, whose debug lines no level would drop."""
    direct = re.compile(r"^from twisted\.logger import .*\bLogger\b", re.MULTILINE)
    offenders = [
        str(path.relative_to(MAILIVERSE.parent))
        for path in sorted(MAILIVERSE.rglob("*.py"))
        if path.name != "logs.py" and direct.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []
