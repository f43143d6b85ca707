"""Describe an unexpected exception for the log without its message: the type and where it was raised.

Exception messages can carry user data (SQLAlchemy puts statement parameters in its errors, a
parser may quote its input), and the log must never hold secrets or mail, so the log gets the
exception's class and the innermost frame (file, line, function), enough to find the bug.
"""

from __future__ import annotations

import os
import traceback


def describe(error: BaseException) -> str:
    """``"KeyError at mailiverse/web/app.py:120 in route"``: the class and the innermost frame, never the message."""
    kind = f"{type(error).__module__}.{type(error).__qualname__}".removeprefix("builtins.")
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return kind
    last = frames[-1]
    return f"{kind} at {_short(last.filename)}:{last.lineno} in {last.name}"


def _short(filename: str) -> str:
    parts = filename.split(os.sep)
    for anchor in ("mailiverse", "site-packages"):
        if anchor in parts:
            return "/".join(parts[len(parts) - 1 - parts[::-1].index(anchor) :])
    return os.path.basename(filename)


__all__ = ["describe"]
