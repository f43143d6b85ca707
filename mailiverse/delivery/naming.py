"""Object names of delivered mail, as the original store layout has them (docs/protocol.md §2.4)."""

from __future__ import annotations

import secrets

from mailiverse.contracts import INBOX_FOLDER


def new_key_base(now_ms: int) -> str:
    """``<ms>_<non-negative random 63-bit decimal>``, like the original's ``abs(SecureRandom long)``."""
    return f"{now_ms}_{secrets.randbits(63)}"


def mail_paths(key_base: str, folder: str = INBOX_FOLDER) -> tuple[str, str]:
    """Return the (original, JSON twin) object paths for one message filed in ``folder``."""
    return f"{folder}/{key_base}", f"{folder}_Json/{key_base}"
