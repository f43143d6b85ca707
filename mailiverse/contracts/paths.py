"""The store-path rule, shared by the store, every front end and the client, and the prefix range used for listing."""

from __future__ import annotations

import unicodedata


class InvalidPath(ValueError):
    """An object path or prefix is not acceptable (traversal, control characters, too long...)."""


MAX_PATH_BYTES = 1024
MAX_SEGMENT_BYTES = 255
MAX_DEPTH = 32

_FORBIDDEN_CHARACTERS = frozenset({"\\"})
_MAX_CODE_POINT = 0x10FFFF
_SURROGATES = range(0xD800, 0xE000)


def _check_characters(text: str, what: str) -> None:
    try:
        encoded = text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidPath(f"{what} is not valid Unicode text (lone surrogate)") from None
    if len(encoded) > MAX_PATH_BYTES:
        raise InvalidPath(f"{what} is longer than {MAX_PATH_BYTES} bytes in UTF-8")
    for character in text:
        if unicodedata.category(character) == "Cc":
            raise InvalidPath(f"{what} contains a control character (U+{ord(character):04X})")
        if character in _FORBIDDEN_CHARACTERS:
            raise InvalidPath(f"{what} contains a backslash")


def validate_path(path: object) -> str:
    """Return ``path`` unchanged if it is an acceptable relative object path, else raise InvalidPath.

    Acceptable: a str of ``/``-separated non-empty segments, none of them ``.`` or ``..``, no leading
    or trailing ``/``, no control characters or backslashes, at most MAX_PATH_BYTES bytes of UTF-8,
    MAX_SEGMENT_BYTES per segment and MAX_DEPTH segments.
    """
    if not isinstance(path, str):
        raise InvalidPath("path must be a string")
    if not path:
        raise InvalidPath("path is empty")
    _check_characters(path, "path")
    if path.startswith("/"):
        raise InvalidPath("path must be relative (it starts with '/')")
    segments = path.split("/")
    if len(segments) > MAX_DEPTH:
        raise InvalidPath(f"path has more than {MAX_DEPTH} segments")
    for segment in segments:
        if not segment:
            raise InvalidPath("path has an empty segment ('//' or a trailing '/')")
        if segment in (".", ".."):
            raise InvalidPath("path has a '.' or '..' segment")
        if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
            raise InvalidPath(f"a path segment is longer than {MAX_SEGMENT_BYTES} bytes")
    return path


def validate_prefix(prefix: object) -> str:
    """Return ``prefix`` if it may be used to list objects: any start of a valid path, or ``""``."""
    if not isinstance(prefix, str):
        raise InvalidPath("prefix must be a string")
    if not prefix:
        return prefix
    _check_characters(prefix, "prefix")
    if prefix.startswith("/"):
        raise InvalidPath("prefix must be relative (it starts with '/')")
    return prefix


def prefix_upper_bound(prefix: str) -> str | None:
    """The smallest string greater than every string starting with ``prefix``; None if unbounded.

    Strings are compared by code point, which is the order of UTF-8 bytes, SQLite's BINARY collation
    and PostgreSQL's "C" collation.
    """
    text = prefix
    while text:
        last = ord(text[-1])
        if last == _MAX_CODE_POINT:
            text = text[:-1]
            continue
        following = last + 1
        if following in _SURROGATES:
            following = _SURROGATES.stop
        return text[:-1] + chr(following)
    return None
