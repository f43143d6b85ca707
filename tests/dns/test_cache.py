"""The resolver's answer cache on its own, on a Clock: TTLs clamped, negative answers bounded, entries and bytes
capped with the least recently used dropped first."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from mailiverse.dns import Answer, AnswerCache
from mailiverse.dns.cache import answer_size


def answer(name: str, ttl: int = 300, records: tuple[bytes, ...] = (b"v=spf1 -all",)) -> Answer:
    return Answer(name, "TXT", records, ttl)


def test_an_answer_is_kept_for_its_ttl() -> None:
    """An answer is returned until its TTL has passed, then forgotten."""
    clock = Clock()
    cache = AnswerCache(clock)
    cache.put(("a.test", "TXT"), answer("a.test", ttl=100))
    clock.advance(99)
    assert cache.get(("a.test", "TXT")) == answer("a.test", ttl=100)
    clock.advance(1)
    assert cache.get(("a.test", "TXT")) is None
    assert len(cache) == 0 and cache.size_bytes == 0


@pytest.mark.parametrize(("ttl", "kept"), [(0, 5), (2, 5), (100, 100), (10**9, 3600)])
def test_ttls_are_clamped(ttl: int, kept: int) -> None:
    """A TTL below min_ttl is raised to it and one above max_ttl cut to it."""
    clock = Clock()
    cache = AnswerCache(clock, min_ttl=5, max_ttl=3600)
    cache.put(("a.test", "TXT"), answer("a.test", ttl=ttl))
    clock.advance(kept - 0.5)
    assert cache.get(("a.test", "TXT")) is not None
    clock.advance(1)
    assert cache.get(("a.test", "TXT")) is None


def test_negative_answers_are_kept_no_longer_than_their_bound() -> None:
    """NXDOMAIN and NODATA with a day's TTL are kept for max_negative_ttl only."""
    clock = Clock()
    cache = AnswerCache(clock, max_negative_ttl=300)
    cache.put(("gone.test", "A"), Answer("gone.test", "A", (), 86400, nxdomain=True))
    cache.put(("empty.test", "A"), Answer("empty.test", "A", (), 86400))
    clock.advance(299)
    assert cache.get(("gone.test", "A")) is not None and cache.get(("empty.test", "A")) is not None
    clock.advance(2)
    assert cache.get(("gone.test", "A")) is None and cache.get(("empty.test", "A")) is None


def test_the_least_recently_used_entry_goes_first_when_full() -> None:
    """At max_entries, a new entry drops the one used longest ago; a get counts as a use."""
    cache = AnswerCache(Clock(), max_entries=3)
    for name in ("a.test", "b.test", "c.test"):
        cache.put((name, "TXT"), answer(name))
    assert cache.get(("a.test", "TXT")) is not None
    cache.put(("d.test", "TXT"), answer("d.test"))
    assert len(cache) == 3
    assert cache.get(("b.test", "TXT")) is None
    assert all(cache.get((n, "TXT")) is not None for n in ("a.test", "c.test", "d.test"))


def test_the_byte_budget_bounds_what_is_held() -> None:
    """Large answers push out older ones to stay within max_bytes; one larger than the budget is not kept."""
    big = (b"k" * 4000,)
    budget = 3 * answer_size(answer("x0.test", records=big))
    cache = AnswerCache(Clock(), max_bytes=budget)
    for n in range(10):
        cache.put((f"x{n}.test", "TXT"), answer(f"x{n}.test", records=big))
        assert cache.size_bytes <= budget
    assert len(cache) == 3 and cache.get(("x9.test", "TXT")) is not None
    cache.put(("huge.test", "TXT"), answer("huge.test", records=(b"h" * budget,)))
    assert cache.get(("huge.test", "TXT")) is None and len(cache) == 3


def test_replacing_an_entry_keeps_the_byte_count_exact() -> None:
    """Putting a key again replaces its entry and its size."""
    cache = AnswerCache(Clock())
    cache.put(("a.test", "TXT"), answer("a.test", records=(b"x" * 1000,)))
    cache.put(("a.test", "TXT"), answer("a.test", records=(b"y",)))
    assert len(cache) == 1 and cache.size_bytes == answer_size(answer("a.test", records=(b"y",)))
