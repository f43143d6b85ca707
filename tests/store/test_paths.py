"""Path validation and the prefix range used for listing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailiverse.contracts.paths import MAX_DEPTH, MAX_PATH_BYTES, prefix_upper_bound
from mailiverse.store import InvalidPath, validate_path, validate_prefix

HOSTILE_PATHS = [
    "",
    "/etc/passwd",
    "../secret",
    "Mail/../../etc",
    "Mail/./In",
    ".",
    "..",
    "Mail//In",
    "Mail/In/",
    "Mail/In\x00.txt",
    "Mail/\nIn",
    "Mail/In\x7f",
    "Mail/In\u0085",
    "Mail\\..\\..\\boot.ini",
    "a" * (MAX_PATH_BYTES + 1),
    "é" * (MAX_PATH_BYTES // 2 + 1),
    "/".join(["a"] * (MAX_DEPTH + 1)),
    "x" * 256,
    "Mail/\ud800",
]


@pytest.mark.parametrize("path", HOSTILE_PATHS)
def test_hostile_paths_are_rejected(path: str) -> None:
    """Traversal, absolute, empty-segment, control-character, surrogate and oversized paths raise InvalidPath."""
    with pytest.raises(InvalidPath):
        validate_path(path)


@pytest.mark.parametrize("path", [None, b"Mail/In", 5])
def test_non_strings_are_rejected(path: object) -> None:
    """Only str paths are accepted."""
    with pytest.raises(InvalidPath):
        validate_path(path)


@pytest.mark.parametrize(
    "path",
    [
        "Mail/In/1700000000000_abc",
        "Cache/%_literal",
        "a",
        "ünï/cødé/😀",
        "a.b/..c/c..",
        "/".join(["a"] * MAX_DEPTH),
    ],
)
def test_ordinary_paths_are_accepted(path: str) -> None:
    """Relative paths of ordinary segments, including '%', '_', dots inside names and unicode, pass unchanged."""
    assert validate_path(path) == path


def test_error_message_names_the_problem_without_echoing_the_path() -> None:
    """The InvalidPath message says what is wrong and does not repeat the hostile input."""
    with pytest.raises(InvalidPath) as caught:
        validate_path("Mail/secret\x00name")
    assert "control character" in str(caught.value)
    assert "secret" not in str(caught.value)


def test_prefixes_may_end_with_a_slash_or_be_empty() -> None:
    """A listing prefix may be empty or a partial path, but not absolute or with control characters."""
    assert validate_prefix("") == ""
    assert validate_prefix("Mail/In/") == "Mail/In/"
    with pytest.raises(InvalidPath):
        validate_prefix("/Mail")
    with pytest.raises(InvalidPath):
        validate_prefix("Mail\x00")


_text = st.text(
    alphabet=st.characters(min_codepoint=1, max_codepoint=0x10FFFF, exclude_categories=("Cs",)),
    max_size=6,
)


@given(prefix=_text.filter(bool), other=_text)
def test_prefix_upper_bound_splits_the_ordering(prefix: str, other: str) -> None:
    """A string starts with the prefix exactly when prefix <= s < upper bound (code-point order)."""
    upper = prefix_upper_bound(prefix)
    candidates = [other, prefix + other, prefix[:-1] + other]
    for candidate in candidates:
        inside = candidate >= prefix and (upper is None or candidate < upper)
        assert inside == candidate.startswith(prefix)
    if upper is not None:
        upper.encode("utf-8")


def test_prefix_upper_bound_edge_cases() -> None:
    """The bound skips surrogates, carries past U+10FFFF, and is unbounded for an empty or all-maximal prefix."""
    assert prefix_upper_bound("a") == "b"
    assert prefix_upper_bound("\ud7ff") == "\ue000"
    assert prefix_upper_bound("a\U0010ffff") == "b"
    assert prefix_upper_bound("\U0010ffff") is None
    assert prefix_upper_bound("") is None
