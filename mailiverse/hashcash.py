"""Parse, check and mint Hashcash version 1 stamps, as carried in an ``X-Hashcash:`` mail header.

A stamp is ``ver:bits:date:resource:ext:rand:counter`` (hashcash.org): ``ver`` is ``1``, ``date`` is
``YYMMDD[hhmm[ss]]`` in UTC, ``resource`` is the recipient's address, and the SHA-1 of the whole stamp
starts with ``bits`` zero bits. Finding such a stamp costs the sender about ``2**bits`` hashes; checking it
costs one. The screener lets a first-time sender's message through when it carries a valid stamp for the
recipient, and the appliance mints one for its own first-contact mail.

Stamps come from strangers, so everything here is bounded by the 512-character limit that ``parse``
enforces first, and error messages name the reason, never the stamp's contents (they may be logged).
Pure: no I/O but ``os.urandom``, no Twisted, no database; the double-spend memory is the caller's, keyed by
``stamp_key``.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

MAX_STAMP_CHARS = 512
"""Longer stamps are refused outright; real ones are under 120 characters (the hashcash tool pads to 96)."""

MAX_HEADER_STAMPS = 8
"""At most this many stamps are taken from one message's ``X-Hashcash`` headers."""

MAX_HEADER_VALUES = 64
"""At most this many ``X-Hashcash`` values are looked at, so a flood of junk headers costs nothing."""

_DIGEST_BITS = 160
# Room for the line breaks and indentation of a folded header value around a stamp.
_FOLDING_SLACK = 64
# Printable ASCII without space: a stamp has no whitespace anywhere (folding can only happen around it).
_STAMP_CHARS = re.compile(r"[\x21-\x7e]*")
# hashcash.org: rand and counter are drawn from the base-64 alphabet (hex is a subset of it).
_BASE64_FIELD = re.compile(r"[A-Za-z0-9+/=]+")
_DATE_FIELD = re.compile(r"[0-9]{6}(?:[0-9]{4}(?:[0-9]{2})?)?")
_BITS_FIELD = re.compile(r"[0-9]{1,3}")
_COUNTER_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
# Every two-character counter tail, so the minting loop does no encoding of its own.
#: How many two-character counter tails ``mint`` tries under each head.
_TAIL_COUNT = len(_COUNTER_ALPHABET) ** 2


@functools.cache
def _counter_tails() -> tuple[bytes, ...]:
    # Made on the first mint, not at import: 4,096 small objects (about 180 KiB) every process would keep.
    return tuple(bytes((a, b)) for a in _COUNTER_ALPHABET for b in _COUNTER_ALPHABET)


@dataclass(frozen=True)
class Stamp:
    """A well-formed stamp: what it claims (bits, date, resource) and its exact text, which is what is hashed."""

    bits: int
    date: datetime
    resource: str
    text: str


def parse(text: str) -> Stamp:
    """The stamp ``text`` describes; ``ValueError`` naming the first thing that makes it malformed.

    Says nothing about whether the work was done: that is ``check``'s job.
    """
    if len(text) > MAX_STAMP_CHARS:
        raise ValueError(f"stamp longer than {MAX_STAMP_CHARS} characters")
    if not text.isascii() or not _STAMP_CHARS.fullmatch(text):
        raise ValueError("stamp has whitespace, non-printable or non-ASCII characters")
    fields = text.split(":")
    if len(fields) != 7:
        raise ValueError(f"stamp has {len(fields)} fields, not 7 (ver:bits:date:resource:ext:rand:counter)")
    version, bits_field, date_field, resource, _ext, rand, counter = fields
    if version != "1":
        raise ValueError("stamp is not version 1")
    if not _BITS_FIELD.fullmatch(bits_field):
        raise ValueError("stamp bits are not a number of at most 3 digits")
    bits = int(bits_field)
    if bits > _DIGEST_BITS:
        raise ValueError(f"stamp claims {bits} bits, more than SHA-1's {_DIGEST_BITS}")
    date = _parse_date(date_field)
    if not resource:
        raise ValueError("stamp resource is empty")
    if not _BASE64_FIELD.fullmatch(rand):
        raise ValueError("stamp rand is empty or not base-64 characters")
    if not _BASE64_FIELD.fullmatch(counter):
        raise ValueError("stamp counter is empty or not base-64 characters")
    return Stamp(bits=bits, date=date, resource=resource, text=text)


def _parse_date(field: str) -> datetime:
    if not _DATE_FIELD.fullmatch(field):
        raise ValueError("stamp date is not YYMMDD, YYMMDDhhmm or YYMMDDhhmmss")
    numbers = [int(field[i : i + 2]) for i in range(0, len(field), 2)]
    numbers += [0] * (6 - len(numbers))
    year, month, day, hour, minute, second = numbers
    try:
        # Two-digit years are read as 2000-2099: a stamp from the 1990s is long expired either way.
        return datetime(2000 + year, month, day, hour, minute, second, tzinfo=UTC)
    except ValueError:
        raise ValueError("stamp date is not a real date and time") from None


def leading_zero_bits(text: str) -> int:
    """How many zero bits the SHA-1 of ``text`` really starts with (0 to 160)."""
    digest = hashlib.sha1(text.encode("ascii")).digest()  # noqa: S324 - hashcash v1 is defined on SHA-1
    return _DIGEST_BITS - int.from_bytes(digest, "big").bit_length()


def check(
    text: str,
    *,
    resource: str,
    now: datetime,
    min_bits: int = 20,
    max_age: timedelta = timedelta(days=2),
    max_future: timedelta = timedelta(hours=1),
) -> Stamp:
    """The stamp, if it is well-formed, for ``resource``, fresh, and worth at least ``min_bits``; else ``ValueError``.

    ``resource`` is the recipient's address; it is compared whole, ASCII lower-cased, after stripping
    surrounding whitespace (a non-ASCII address matches no stamp, which is ASCII). ``now`` must be
    timezone-aware. Whether the stamp was spent before is the caller's question (``stamp_key``).
    """
    _require_aware(now)
    stamp = parse(text)
    if stamp.bits < min_bits:
        raise ValueError(f"stamp claims {stamp.bits} bits, fewer than the {min_bits} required")
    real_bits = leading_zero_bits(stamp.text)
    if real_bits < stamp.bits:
        raise ValueError(f"stamp claims {stamp.bits} bits but its SHA-1 starts with only {real_bits} zero bits")
    wanted = resource.strip()
    if not wanted.isascii() or stamp.resource.lower() != wanted.lower():
        raise ValueError("stamp is for another resource")
    if now - stamp.date > max_age:
        raise ValueError("stamp has expired")
    if stamp.date - now > max_future:
        raise ValueError("stamp is dated in the future")
    return stamp


def stamp_key(stamp: Stamp) -> bytes:
    """The SHA-256 of the stamp's text: what a double-spend memory keeps (the caller keys it further)."""
    return hashlib.sha256(stamp.text.encode("ascii")).digest()


def mint(
    resource: str,
    *,
    bits: int = 20,
    now: datetime,
    rand: bytes | None = None,
    max_tries: int = 1 << 28,
) -> str:
    """A stamp for ``resource`` whose SHA-1 starts with ``bits`` zero bits; ``ValueError`` after ``max_tries``.

    About ``2**bits`` tries on average. The date is ``now`` in UTC to the minute (``YYMMDDhhmm``); ``rand``
    defaults to 12 bytes of ``os.urandom``, written in base 64 without padding as hashcash does; the counter
    is in the base-64 alphabet. The prefix is hashed once and each try hashes only the counter on a copy.
    """
    _require_aware(now)
    if not 0 <= bits <= _DIGEST_BITS:
        raise ValueError(f"bits must be between 0 and {_DIGEST_BITS}")
    if not resource or ":" in resource or not resource.isascii() or not _STAMP_CHARS.fullmatch(resource):
        raise ValueError("resource must be printable ASCII without whitespace or ':'")
    salt = os.urandom(12) if rand is None else rand
    if not salt:
        raise ValueError("rand must not be empty")
    date = now.astimezone(UTC).strftime("%y%m%d%H%M")
    salt_text = base64.b64encode(salt).decode("ascii").rstrip("=")
    prefix = f"1:{bits}:{date}:{resource}::{salt_text}:"
    longest_counter = len(_base64_digits(max(0, max_tries - 1) // _TAIL_COUNT)) + 2
    if len(prefix) + longest_counter > MAX_STAMP_CHARS:
        raise ValueError(f"a stamp for this resource would be longer than {MAX_STAMP_CHARS} characters")
    # The largest digest with ``bits`` leading zeros. Big-endian digests of one length compare as bytes
    # the way they compare as numbers, and a third faster than converting each try to an int.
    highest = ((1 << (_DIGEST_BITS - bits)) - 1).to_bytes(_DIGEST_BITS // 8, "big")
    base = hashlib.sha1(prefix.encode("ascii"))  # noqa: S324 - hashcash v1 is defined on SHA-1
    tries = 0
    head = 0
    all_tails = _counter_tails()
    while tries < max_tries:
        head_text = _base64_digits(head)
        with_head = base.copy()
        with_head.update(head_text)
        tails = all_tails if max_tries - tries >= _TAIL_COUNT else all_tails[: max_tries - tries]
        for tail in tails:
            attempt = with_head.copy()
            attempt.update(tail)
            if attempt.digest() <= highest:
                return prefix + (head_text + tail).decode("ascii")
        tries += _TAIL_COUNT
        head += 1
    raise ValueError(f"no stamp of {bits} bits found in {max_tries} tries")


def _base64_digits(number: int) -> bytes:
    digits = bytearray()
    while True:
        number, digit = divmod(number, 64)
        digits.append(_COUNTER_ALPHABET[digit])
        if not number:
            return bytes(reversed(digits))


def header_stamps(values: Iterable[str]) -> list[str]:
    """The well-formed stamps among the values of a message's ``X-Hashcash`` headers, in order, at most 8.

    Each value is unfolded (line breaks removed) and stripped; values that are not a well-formed stamp are
    skipped, as are values longer than a stamp plus some folding whitespace. Only the first
    ``MAX_HEADER_VALUES`` values are looked at, so the work is bounded whatever the message holds.
    """
    stamps: list[str] = []
    for count, value in enumerate(values):
        if count >= MAX_HEADER_VALUES or len(stamps) >= MAX_HEADER_STAMPS:
            break
        if len(value) > MAX_STAMP_CHARS + _FOLDING_SLACK:
            continue
        candidate = value.replace("\r", "").replace("\n", "").strip()
        try:
            parse(candidate)
        except ValueError:
            continue
        stamps.append(candidate)
    return stamps


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise TypeError("now must be a timezone-aware datetime")


__all__ = [
    "MAX_HEADER_STAMPS",
    "MAX_STAMP_CHARS",
    "Stamp",
    "check",
    "header_stamps",
    "leading_zero_bits",
    "mint",
    "parse",
    "stamp_key",
]
