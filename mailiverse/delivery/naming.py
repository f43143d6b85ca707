"""Object names of delivered mail, as the original store layout has them (PROTOCOL.md §2.4)."""

from __future__ import annotations

import secrets

INBOX_PREFIX = "Mail/In"
INBOX_JSON_PREFIX = "Mail/In_Json"
SENT_PREFIX = "Mail/Sent"
SENT_JSON_PREFIX = "Mail/Sent_Json"


def new_key_base(now_ms: int) -> str:
    """``<ms>_<non-negative random 63-bit decimal>``, like the original's ``abs(SecureRandom long)``."""
    return f"{now_ms}_{secrets.randbits(63)}"


def mail_paths(key_base: str, prefix: str = INBOX_PREFIX) -> tuple[str, str]:
    """Return the (original, JSON twin) object paths for one delivered message."""
    return f"{prefix}/{key_base}", f"{prefix}_Json/{key_base}"
