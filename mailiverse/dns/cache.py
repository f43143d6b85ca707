"""The resolver's cache of answers: bounded in entries and bytes, least recently used out first, TTLs honoured.

A name's TTL is clamped: at least ``min_ttl`` (a TTL of 0 would send every message's lookups to the
server), at most ``max_ttl``. Empty answers (NXDOMAIN, NODATA) are cached as RFC 2308 allows, but for
at most ``max_negative_ttl``: a record published a moment ago should not stay unseen for long. Only
answers are cached; a lookup that failed is asked again next time.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from mailiverse.dns.answer import Answer, MailExchange

DEFAULT_MAX_ENTRIES = 10_000
#: Enough for the entries at an ordinary answer's size, and a ceiling when answers are huge ones.
DEFAULT_MAX_BYTES = 16 * 1024 * 1024
DEFAULT_MIN_TTL = 5
DEFAULT_MAX_TTL = 24 * 3600
DEFAULT_MAX_NEGATIVE_TTL = 300
#: What an entry costs besides its records (the key, the tuple, the dataclass), roughly.
_ENTRY_OVERHEAD = 200


def answer_size(answer: Answer) -> int:
    """An estimate of the bytes an answer holds, for the cache's byte budget."""
    size = _ENTRY_OVERHEAD + len(answer.name)
    for record in answer.records:
        size += 64 + (len(record.exchange) if isinstance(record, MailExchange) else len(record))
    return size


class AnswerCache:
    """Answers by ``(name, rtype)`` until their TTL runs out, ``clock`` (an ``IReactorTime``) telling the time."""

    def __init__(
        self,
        clock: Any,
        *,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        max_bytes: int = DEFAULT_MAX_BYTES,
        min_ttl: int = DEFAULT_MIN_TTL,
        max_ttl: int = DEFAULT_MAX_TTL,
        max_negative_ttl: int = DEFAULT_MAX_NEGATIVE_TTL,
    ) -> None:
        if max_entries < 1 or max_bytes < 1 or not 0 <= min_ttl <= max_ttl or max_negative_ttl < 0:
            raise ValueError("the cache needs room for an entry and 0 <= min_ttl <= max_ttl")
        self._clock = clock
        self._max_entries, self._max_bytes = max_entries, max_bytes
        self._min_ttl, self._max_ttl, self._max_negative_ttl = min_ttl, max_ttl, max_negative_ttl
        # key -> (expiry, size, answer), the least recently used first
        self._entries: OrderedDict[tuple[str, str], tuple[float, int, Answer]] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        """The estimated bytes held now."""
        return self._bytes

    def get(self, key: tuple[str, str]) -> Answer | None:
        """The cached answer for ``key``, or None when there is none or it expired."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] <= self._clock.seconds():
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry[2]

    def put(self, key: tuple[str, str], answer: Answer) -> None:
        """Keep ``answer`` for its clamped TTL, making room by dropping the least recently used entries."""
        if key in self._entries:
            self._drop(key)
        ttl = max(self._min_ttl, min(answer.ttl, self._max_ttl))
        if not answer.records:
            ttl = min(ttl, self._max_negative_ttl)
        size = answer_size(answer)
        if ttl <= 0 or size > self._max_bytes:
            return
        self._entries[key] = (self._clock.seconds() + ttl, size, answer)
        self._bytes += size
        while len(self._entries) > self._max_entries or self._bytes > self._max_bytes:
            self._drop(next(iter(self._entries)))

    def _drop(self, key: tuple[str, str]) -> None:
        _, size, _ = self._entries.pop(key)
        self._bytes -= size
