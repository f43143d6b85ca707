"""The appliance's log level: a ``Logger`` whose lines below it cost one set lookup.

Twisted's ``Logger`` builds every event and publishes it, and twistd writes every level to its log,
so a debug line on the hot path (one per stored message) was paid for in full on the reactor thread.
Every mailiverse module logs through :class:`Logger`; ``twistd mailiverse --log-level`` sets the
threshold at start-up (:func:`set_level`). Twisted's own loggers are not filtered: a twistd plugin has
no hook into the observer twistd installs.

This module imports only Twisted's logger, so that any part of the appliance may import it.
"""

from __future__ import annotations

from twisted.logger import Logger as TwistedLogger
from twisted.logger import LogLevel

DEFAULT_LEVEL = LogLevel.info
_DEBUG = LogLevel.debug


def _below(level: LogLevel) -> frozenset[LogLevel]:
    return frozenset(other for other in LogLevel.iterconstants() if other < level)


# The levels that are dropped, not those that are kept: a level that is no LogLevel at all still
# reaches Twisted's emit, which reports it as the programming error it is.
_muted = _below(DEFAULT_LEVEL)


def set_level(level: LogLevel) -> None:
    """Drop every later line below ``level`` from every :class:`Logger`, including those made already."""
    global _muted
    _muted = _below(level)


class Logger(TwistedLogger):
    """Twisted's ``Logger``, returning before any event is built when the level is below the appliance's."""

    def emit(self, level: LogLevel, format: str | None = None, **kwargs: object) -> None:
        if level in _muted:
            return
        super().emit(level, format, **kwargs)

    def debug(self, format: str | None = None, **kwargs: object) -> None:
        # The level muted by default, and the one on hot paths: checked before the call to emit,
        # which costs as much again as the check (a frame and a copy of kwargs).
        if _DEBUG in _muted:
            return
        self.emit(_DEBUG, format, **kwargs)
