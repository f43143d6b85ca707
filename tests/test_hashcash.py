"""Tests for mailiverse.hashcash: stamps minted elsewhere, mint/check round trips, every refusal, and garbage."""

from __future__ import annotations

import hashlib
import random
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailiverse.hashcash import (
    MAX_HEADER_STAMPS,
    MAX_STAMP_CHARS,
    Stamp,
    check,
    header_stamps,
    leading_zero_bits,
    mint,
    parse,
    stamp_key,
)

# Stamps made by other implementations, found through the library's search:
# - the example of Wikipedia's "Hashcash" article (the X-Hashcash header of hashcash.org's format), as quoted
#   in a public notes repository: ``X-Hashcash: 1:20:1303030600:adam@cypherspace.org::McMybZIhxKXu57jd:ckvi``;
# - a real message of the git mailing list (gmane archive, Greg Troxel, 2013-01-03,
#   Message-ID <rmiobh6rujt.fsf@fnord.ir.bbn.com>, sent with Gnus), which carries one stamp per recipient made by
#   the hashcash tool, whose counters are zero-padded to 96 characters;
# - the documentation of the Elixir package ``hashcash`` 1.2.0 (https://hexdocs.pm/hashcash/Hashcash.html),
#   whose counter is decimal and rand 31 characters long.
WIKIPEDIA = "1:20:1303030600:adam@cypherspace.org::McMybZIhxKXu57jd:ckvi"
GIT_LIST_GITSTER = "1:20:130103:gitster@pobox.com::eccL/Qw+svqJsq2r:000000000000000000000000000000000000000000000Wiq"
GIT_LIST_GIT = "1:20:130103:git@vger.kernel.org::eccL/Qw+svqJsq2r:000000000000000000000000000000000000000000BQme"
ELIXIR = "1:20:220902:foobar::GszJUJJC+tcQSkvw+GPg7FBYYi289eL:294524"

NOW = datetime(2026, 12, 6, 18, 0, 30, tzinfo=UTC)
RAND = bytes(range(12))


def _mint(resource: str = "alice@example.org", *, bits: int = 12, now: datetime = NOW, rand: bytes = RAND) -> str:
    return mint(resource, bits=bits, now=now, rand=rand)


@pytest.mark.parametrize(
    ("text", "resource", "date"),
    [
        (WIKIPEDIA, "adam@cypherspace.org", datetime(2013, 3, 3, 6, 0, tzinfo=UTC)),
        (GIT_LIST_GITSTER, "gitster@pobox.com", datetime(2013, 1, 3, tzinfo=UTC)),
        (GIT_LIST_GIT, "git@vger.kernel.org", datetime(2013, 1, 3, tzinfo=UTC)),
        (ELIXIR, "foobar", datetime(2022, 9, 2, tzinfo=UTC)),
    ],
)
def test_stamps_minted_by_other_implementations_are_accepted(text: str, resource: str, date: datetime) -> None:
    """Stamps from Wikipedia's example, the hashcash tool and the Elixir package pass the 20-bit check."""
    stamp = check(text, resource=resource, now=date + timedelta(hours=5))
    assert stamp == Stamp(bits=20, date=date, resource=resource, text=text)
    assert leading_zero_bits(text) >= 20


def test_a_miscopied_known_stamp_is_refused_for_its_real_digest() -> None:
    """One changed letter of a real stamp leaves the claim of 20 bits but not the work: refused."""
    forged = WIKIPEDIA.replace("adam@", "anni@")
    assert leading_zero_bits(forged) < 20
    with pytest.raises(ValueError, match="claims 20 bits but its SHA-1 starts with only"):
        check(forged, resource="anni@cypherspace.org", now=datetime(2013, 3, 3, 7, tzinfo=UTC))


@pytest.mark.parametrize(
    ("field", "date"),
    [
        ("261206", datetime(2026, 12, 6, tzinfo=UTC)),
        ("2612061759", datetime(2026, 12, 6, 17, 59, tzinfo=UTC)),
        ("261206175958", datetime(2026, 12, 6, 17, 59, 58, tzinfo=UTC)),
        ("000229", datetime(2000, 2, 29, tzinfo=UTC)),
    ],
)
def test_each_date_precision_is_read_in_utc(field: str, date: datetime) -> None:
    """YYMMDD, YYMMDDhhmm and YYMMDDhhmmss are all read, as UTC, in the years 2000-2099."""
    assert parse(f"1:0:{field}:bob@example.org::abc:0").date == date


def test_minted_stamp_round_trips_through_check() -> None:
    """A 16-bit stamp minted for an address passes the check for that address, whatever its case and spaces."""
    text = mint("Bob@Example.org", bits=16, now=NOW)
    stamp = check(text, resource="  bob@example.ORG\n", now=NOW, min_bits=16)
    assert stamp.bits == 16
    assert stamp.resource == "Bob@Example.org"
    assert stamp.date == datetime(2026, 12, 6, 18, 0, tzinfo=UTC)
    assert leading_zero_bits(text) >= 16


def test_minted_stamp_has_the_hashcash_layout() -> None:
    """Version 1, the bits, the UTC date to the minute, no extension, rand in unpadded base 64, a base-64 counter."""
    eastern = NOW.astimezone(timezone(timedelta(hours=5)))
    text = mint("carol@example.org", bits=8, now=eastern, rand=b"\x00\x01\x02")
    version, bits, date, resource, ext, rand, counter = text.split(":")
    assert (version, bits, date, resource, ext, rand) == ("1", "8", "2612061800", "carol@example.org", "", "AAEC")
    assert re.fullmatch(r"[A-Za-z0-9+/]{3,}", counter)


def test_default_rand_is_twelve_fresh_bytes() -> None:
    """Without ``rand`` each stamp gets 16 base-64 characters (12 bytes) of its own."""
    rands = {mint("dave@example.org", bits=4, now=NOW).split(":")[5] for _ in range(20)}
    assert len(rands) == 20
    assert all(re.fullmatch(r"[A-Za-z0-9+/]{16}", rand) for rand in rands)


def test_minting_20_bits_takes_under_two_seconds() -> None:
    """A 20-bit stamp whose search takes 1.12 million tries (about the average of 2**20) is found within 2 s."""
    started = time.perf_counter()
    text = mint("alice@example.org", bits=20, now=NOW, rand=b"\x03" * 12)
    elapsed = time.perf_counter() - started
    assert check(text, resource="alice@example.org", now=NOW).bits == 20
    assert elapsed < 2.0


def test_zero_bits_is_the_first_counter() -> None:
    """A 0-bit stamp needs no work: the first counter is taken."""
    text = _mint(bits=0)
    assert text.endswith(":AAA")
    assert check(text, resource="alice@example.org", now=NOW, min_bits=0).bits == 0


def test_minting_gives_up_after_max_tries() -> None:
    """A search bounded by ``max_tries`` ends with ValueError instead of running on."""
    started = time.perf_counter()
    with pytest.raises(ValueError, match="no stamp of 60 bits found in 5000 tries"):
        mint("alice@example.org", bits=60, now=NOW, max_tries=5000)
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize(
    ("resource", "bits", "rand", "reason"),
    [
        ("", 20, None, "resource must be"),
        ("a:b@example.org", 20, None, "resource must be"),
        ("a b@example.org", 20, None, "resource must be"),
        ("é@example.org", 20, None, "resource must be"),
        ("alice@example.org", 161, None, "bits must be"),
        ("alice@example.org", -1, None, "bits must be"),
        ("alice@example.org", 20, b"", "rand must not be empty"),
        ("a" * 480 + "@example.org", 20, None, "longer than 512"),
        ("alice@example.org", 20, b"x" * 400, "longer than 512"),
    ],
)
def test_mint_refuses_what_would_not_be_a_stamp(resource: str, bits: int, rand: bytes | None, reason: str) -> None:
    """Minting refuses resources, bit counts and rands that cannot make a well-formed stamp."""
    with pytest.raises(ValueError, match=reason):
        mint(resource, bits=bits, now=NOW, rand=rand)


def test_naive_datetimes_are_a_programming_error() -> None:
    """A ``now`` without a time zone is refused with TypeError, not read as local time."""
    naive = datetime(2026, 12, 6, 18, 0)
    with pytest.raises(TypeError, match="timezone-aware"):
        mint("alice@example.org", bits=1, now=naive)
    with pytest.raises(TypeError, match="timezone-aware"):
        check(WIKIPEDIA, resource="adam@cypherspace.org", now=naive)


def test_claiming_20_bits_without_the_work_is_refused() -> None:
    """An 8-bit stamp relabelled as 20 bits is refused: the claim must not exceed the real leading zeros."""
    forged = _mint(bits=8).replace("1:8:", "1:20:", 1)
    assert leading_zero_bits(forged) < 20
    with pytest.raises(ValueError, match="claims 20 bits but its SHA-1 starts with only"):
        check(forged, resource="alice@example.org", now=NOW)


def test_real_work_above_the_claim_is_fine_but_the_claim_is_what_counts() -> None:
    """A stamp worth more than it claims passes at its claim, and fails a minimum above its claim."""
    text = _mint(bits=12)
    assert leading_zero_bits(text) >= 12
    assert check(text, resource="alice@example.org", now=NOW, min_bits=12).bits == 12
    with pytest.raises(ValueError, match="claims 12 bits, fewer than the 20 required"):
        check(text, resource="alice@example.org", now=NOW)


@pytest.mark.parametrize(
    "recipient",
    ["bob@example.org", "alice@example.org.evil", "alice@example", "alice", "", "\u212a@example.org"],
)
def test_a_stamp_for_another_address_is_refused(recipient: str) -> None:
    """The whole address must match: no other user, no prefix, no Unicode look-alike lower-casing to it."""
    text = mint("k@example.org" if recipient.startswith("\u212a") else "alice@example.org", bits=8, now=NOW)
    with pytest.raises(ValueError, match="another resource"):
        check(text, resource=recipient, now=NOW, min_bits=8)


def test_the_age_limit_is_inclusive_and_then_refuses() -> None:
    """A stamp is good up to ``max_age`` after its date and refused one second later."""
    text = _mint(bits=8)
    minted = datetime(2026, 12, 6, 18, 0, tzinfo=UTC)
    check(text, resource="alice@example.org", now=minted + timedelta(days=2), min_bits=8)
    with pytest.raises(ValueError, match="expired"):
        check(text, resource="alice@example.org", now=minted + timedelta(days=2, seconds=1), min_bits=8)
    with pytest.raises(ValueError, match="expired"):
        check(WIKIPEDIA, resource="adam@cypherspace.org", now=NOW)


def test_a_stamp_from_the_future_is_refused_past_the_allowance() -> None:
    """A stamp dated up to ``max_future`` ahead (clock skew) passes; further ahead it is refused."""
    text = _mint(bits=8)
    minted = datetime(2026, 12, 6, 18, 0, tzinfo=UTC)
    check(text, resource="alice@example.org", now=minted - timedelta(hours=1), min_bits=8)
    with pytest.raises(ValueError, match="future"):
        check(text, resource="alice@example.org", now=minted - timedelta(hours=1, seconds=1), min_bits=8)
    with pytest.raises(ValueError, match="future"):
        check(text, resource="alice@example.org", now=minted - timedelta(minutes=2), min_bits=8, max_future=timedelta())


GOOD = "1:20:261206:bob@example.org::abc:0"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("0:20:261206:bob@example.org::abc:0", "not version 1"),
        ("2:20:261206:bob@example.org::abc:0", "not version 1"),
        ("01:20:261206:bob@example.org::abc:0", "not version 1"),
        ("1:x:261206:bob@example.org::abc:0", "bits are not a number"),
        ("1::261206:bob@example.org::abc:0", "bits are not a number"),
        ("1:-20:261206:bob@example.org::abc:0", "bits are not a number"),
        ("1:+20:261206:bob@example.org::abc:0", "bits are not a number"),
        ("1:0x14:261206:bob@example.org::abc:0", "bits are not a number"),
        ("1:1000:261206:bob@example.org::abc:0", "bits are not a number"),
        ("1:161:261206:bob@example.org::abc:0", "more than SHA-1's 160"),
        ("1:20:2612:bob@example.org::abc:0", "date is not YYMMDD"),
        ("1:20:26120618:bob@example.org::abc:0", "date is not YYMMDD"),
        ("1:20:2612061800000:bob@example.org::abc:0", "date is not YYMMDD"),
        ("1:20:26-2-6:bob@example.org::abc:0", "date is not YYMMDD"),
        ("1:20::bob@example.org::abc:0", "date is not YYMMDD"),
        ("1:20:260230:bob@example.org::abc:0", "not a real date"),
        ("1:20:261306:bob@example.org::abc:0", "not a real date"),
        ("1:20:261200:bob@example.org::abc:0", "not a real date"),
        ("1:20:2612062400:bob@example.org::abc:0", "not a real date"),
        ("1:20:2612061860:bob@example.org::abc:0", "not a real date"),
        ("1:20:261206235960:bob@example.org::abc:0", "not a real date"),
        ("1:20:261206:::abc:0", "resource is empty"),
        ("1:20:261206:bob@example.org:::0", "rand is empty"),
        ("1:20:261206:bob@example.org::a_c:0", "rand is empty or not base-64"),
        ("1:20:261206:bob@example.org::abc:", "counter is empty"),
        ("1:20:261206:bob@example.org::abc:0-1", "counter is empty or not base-64"),
        ("1:20:261206:bob@example.org::abc", "has 6 fields"),
        ("1:20:261206:bob@example.org::abc:0:0", "has 8 fields"),
        ("1:20:261206:bob@example.org:a:b:c:0", "has 8 fields"),
        ("", "has 1 fields"),
        (" " + GOOD, "whitespace"),
        (GOOD + "\n", "whitespace"),
        ("1:20:261206:bob @example.org::abc:0", "whitespace"),
        ("1:20:261206:bob\t@example.org::abc:0", "whitespace"),
        ("1:20:261206:bob\x00@example.org::abc:0", "non-printable"),
        ("1:20:261206:bob\x7f@example.org::abc:0", "non-printable"),
        ("1:20:261206:bób@example.org::abc:0", "non-ASCII"),
        ("1:２0:261206:bob@example.org::abc:0", "non-ASCII"),
        ("1:20:２61206:bob@example.org::abc:0", "non-ASCII"),
        ("1:20:261206:bob@example.org::abc:0\u2028", "non-ASCII"),
        ("1:20:261206:" + "b" * 500 + "::abc:0", "longer than 512"),
    ],
)
def test_malformed_stamps_are_refused_with_their_reason(text: str, reason: str) -> None:
    """Each kind of malformed stamp gets a ValueError that names what is wrong, from parse and from check."""
    with pytest.raises(ValueError, match=re.escape(reason)):
        parse(text)
    with pytest.raises(ValueError, match=re.escape(reason)):
        check(text, resource="bob@example.org", now=NOW)


def test_the_reason_never_quotes_the_stamp() -> None:
    """Refusals may be logged, so they carry the reason and never the address or the stamp."""
    for text in ("2:20:261206:secret@example.org::abc:0", "1:20:261206:secret@example.org::abc:0"):
        with pytest.raises(ValueError) as refused:
            check(text, resource="other@example.org", now=NOW)
        assert "secret" not in str(refused.value)


def test_the_length_limit_is_512_characters_exactly() -> None:
    """A well-formed stamp of exactly 512 characters parses; one more character is refused before anything else."""
    padding = MAX_STAMP_CHARS - len("1:20:261206:@example.org::abc:0")
    longest = f"1:20:261206:{'b' * padding}@example.org::abc:0"
    assert len(longest) == MAX_STAMP_CHARS
    assert parse(longest).text == longest
    with pytest.raises(ValueError, match="longer than 512"):
        parse(longest + "0")
    with pytest.raises(ValueError, match="longer than 512"):
        parse("\x00" * 10_000_000)


def test_stamp_key_is_the_sha256_of_the_exact_text() -> None:
    """The double-spend key is the SHA-256 of the stamp's text: the same stamp again, the same key."""
    first = check(GIT_LIST_GITSTER, resource="gitster@pobox.com", now=datetime(2013, 1, 3, 12, tzinfo=UTC))
    again = parse(GIT_LIST_GITSTER)
    other = parse(GIT_LIST_GIT)
    assert stamp_key(first) == stamp_key(again) == hashlib.sha256(GIT_LIST_GITSTER.encode()).digest()
    assert stamp_key(first) != stamp_key(other)
    assert len(stamp_key(first)) == 32


def test_header_stamps_takes_the_stamps_of_a_real_message() -> None:
    """The two X-Hashcash values of the git list message come back in order, unfolded and stripped."""
    values = [" " + GIT_LIST_GITSTER, "\r\n\t" + GIT_LIST_GIT + "\r\n"]
    assert header_stamps(values) == [GIT_LIST_GITSTER, GIT_LIST_GIT]


def test_header_stamps_skips_what_is_not_a_stamp() -> None:
    """Junk, version-0, oversized and mid-stamp folded values are skipped; the stamps among them are kept."""
    values = [
        "",
        "not a stamp",
        "0:030626:foo@example.org:6470e06d773e05a8",
        GIT_LIST_GIT,
        "1:20:261206:" + "b" * 600 + "::abc:0",
        "x" * 5_000_000,
        "1:20:13\r\n 0103:split@example.org::abc:0",
        WIKIPEDIA,
    ]
    assert header_stamps(values) == [GIT_LIST_GIT, WIKIPEDIA]


def test_header_stamps_keeps_at_most_eight() -> None:
    """However many stamps a message carries, at most eight are returned."""
    values = [f"1:20:261206:user{n}@example.org::abc:0" for n in range(50)]
    assert header_stamps(values) == values[:MAX_HEADER_STAMPS]


def test_header_stamps_looks_at_a_bounded_number_of_values() -> None:
    """A flood of junk headers is not read to the end: a stamp after the 64th value is not looked for."""
    looked_at = 0

    def flood() -> Iterator[str]:
        nonlocal looked_at
        for _ in range(1_000_000):
            looked_at += 1
            yield "junk"

    assert header_stamps(flood()) == []
    assert looked_at <= 65
    assert header_stamps(["junk"] * 63 + [GIT_LIST_GIT]) == [GIT_LIST_GIT]
    assert header_stamps(["junk"] * 64 + [GIT_LIST_GIT]) == []


def _outcome(text: str) -> Stamp | None:
    """The parsed stamp, or None for a ValueError; any other exception fails the test."""
    try:
        stamp = parse(text)
    except ValueError:
        stamp = None
    try:
        checked = check(text, resource="bob@example.org", now=NOW, min_bits=0)
    except ValueError:
        checked = None
    if checked is not None:
        assert checked == stamp
    header_stamps([text])
    return stamp


@given(st.text(max_size=600))
def test_arbitrary_text_raises_only_value_error(text: str) -> None:
    """Any Unicode text gives a stamp or a ValueError, never another exception."""
    stamp = _outcome(text)
    if stamp is not None:
        assert stamp.text == text
        assert 0 <= stamp.bits <= 160


@given(st.text(alphabet="01234569:+/=abAZ@. \x00\xe9\u0662", max_size=80))
def test_stamp_shaped_text_raises_only_value_error(text: str) -> None:
    """Text made of the characters stamps are made of gives a stamp or a ValueError, never another exception."""
    stamp = _outcome(text)
    if stamp is not None:
        assert text.count(":") == 6


def test_mutated_real_stamps_raise_only_value_error() -> None:
    """20,000 random edits of real stamps: each gives a stamp or a ValueError, and the unchanged ones pass."""
    rng = random.Random(20261206)
    sources = [WIKIPEDIA, GIT_LIST_GITSTER, GIT_LIST_GIT, ELIXIR, _mint(bits=8)]
    pool = "0123456789:+/=abzAZ@._- \t\r\n\x00\x7f\xff\u0660\u212a\U0001f4e7"
    parsed = 0
    for _ in range(20_000):
        chars = list(rng.choice(sources))
        for _ in range(rng.randint(1, 4)):
            where = rng.randrange(len(chars) + 1)
            action = rng.randrange(3)
            if action == 0:
                chars.insert(where, rng.choice(pool))
            elif action == 1 and chars:
                del chars[min(where, len(chars) - 1)]
            elif chars:
                chars[min(where, len(chars) - 1)] = rng.choice(pool)
        if _outcome("".join(chars)) is not None:
            parsed += 1
    assert parsed > 0
    for source in sources[:4]:
        assert _outcome(source) is not None
