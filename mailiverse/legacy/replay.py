"""Replays of a signed MV StorePut: one signature, one body.

The original MV signature (docs/protocol.md §4) covers the method, the content type, the
``X-Mv-Date`` (whole seconds) and the Resource, but neither the body nor a nonce. Within the date
window (``LegacyOptions.date_skew_seconds``, 15 minutes either side of the server clock) a captured
StorePut header could be sent again with other bytes. The guard remembers the signature of every
accepted StorePut, with a digest of its body, for as long as the signature is fresh: the same
signature with the same body is a client's retry and is let through (the write is idempotent);
with another body it is refused. Reads and deletes are idempotent and carry no body to forge.

Memory is bounded (``max_entries``; the oldest are forgotten first) and per process; after a
restart a signature seen before it is not remembered (the window is then at most 15 minutes).
"""

from __future__ import annotations

import hashlib
import hmac
from collections import OrderedDict
from collections.abc import Callable

DEFAULT_MAX_ENTRIES = 50_000


class PutReplayGuard:
    """Which StorePut signatures were seen, and with what body, until they go stale."""

    def __init__(self, clock_ms: Callable[[], int], window_ms: int, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        self._clock_ms = clock_ms
        self._window_ms = window_ms
        self._max_entries = max_entries
        self._seen: OrderedDict[bytes, tuple[bytes, int]] = OrderedDict()

    def admit(self, authorization: str, date_ms: int, body: bytes) -> bool:
        """Record a verified StorePut; False when its signature was already used for another body."""
        now = self._clock_ms()
        while self._seen:
            _first, (_digest, stale_at) = next(iter(self._seen.items()))
            if stale_at > now and len(self._seen) < self._max_entries:
                break
            self._seen.popitem(last=False)
        key = hashlib.sha256(authorization.encode("utf-8")).digest()
        digest = hashlib.sha256(body).digest()
        seen = self._seen.get(key)
        if seen is not None:
            return hmac.compare_digest(seen[0], digest)
        self._seen[key] = (digest, date_ms + self._window_ms)
        return True

    def __len__(self) -> int:
        return len(self._seen)
