"""org.json-compatible serialisation: escaping and member order."""

from __future__ import annotations

import json
import re
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from mailiverse.mime.jsonout import dumps, iter_dumps, quote


def test_escapes_match_org_json() -> None:
    """Controls, C1, U+2000-20FF are \\u-escaped (lower-case hex); '/' only after '<'."""
    assert quote('a/b </x> \t\n\r\b\f"\\') == '"a/b <\\/x> \\t\\n\\r\\b\\f\\"\\\\"'
    assert quote("\x01\x1f\x85\u2028\u20ac") == '"\\u0001\\u001f\\u0085\\u2028\\u20ac"'
    assert quote("\x7f\xa0\u1fff\u2100中😀") == '"\x7f\xa0\u1fff\u2100中😀"'


def test_compact_and_insertion_order() -> None:
    """Objects keep insertion order with no spaces between tokens."""
    assert dumps({"b": ["x", {"a": "y"}], "a": {}}) == '{"b":["x",{"a":"y"}],"a":{}}'


@given(st.recursive(st.text(), lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner), max_leaves=20))
def test_round_trips_through_json(value: object) -> None:
    """Whatever it writes parses back to the same value."""
    assert json.loads(dumps(value)) == value


def test_deep_nesting_does_not_recurse() -> None:
    """A value nested far deeper than Python's recursion limit still serialises."""
    value: list[object] = []
    for _ in range(20_000):
        value = [value]
    assert dumps(value).count("[") == 20_001


def _reference(value: Any) -> str:
    """A plainly recursive org.json serialiser, the oracle for the streaming one."""
    if isinstance(value, dict):
        return "{" + ",".join(quote(str(k)) + ":" + _reference(v) for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_reference(v) for v in value) + "]"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return quote(value)


_TEXT = st.text(alphabet=st.sampled_from(["a", "<", "/", "\\", '"', "\n", "\x85", "\u2028", "\u20ac", "中", "😀"]))
_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | _TEXT | st.text(),
    lambda inner: st.lists(inner) | st.dictionaries(_TEXT, inner),
    max_leaves=40,
)


@given(_VALUES, st.integers(min_value=1, max_value=12))
def test_streamed_batches_join_to_the_same_text(value: Any, batch_chars: int) -> None:
    """Whatever the batch size, the batches join to exactly the text of a plain recursive serialiser."""
    batches = list(iter_dumps(value, batch_chars))
    assert all(batches)
    assert "".join(batches) == _reference(value) == dumps(value)


def test_long_strings_are_escaped_across_batches() -> None:
    """A string longer than a batch is cut into pieces without splitting the '</' escape."""
    text = ("a" * 7 + "</" + "<" * 5 + "/\u2028") * 50
    for batch_chars in (1, 2, 3, 8, 9, 64):
        assert "".join(iter_dumps({"k": [text]}, batch_chars)) == _reference({"k": [text]})


def test_batches_stay_bounded_for_large_values() -> None:
    """A megabyte string comes out in batches near the batch size, not as one piece."""
    batches = list(iter_dumps(["x" * 1_000_000], 64 * 1024))
    assert len(batches) > 10
    assert max(len(b) for b in batches) < 2 * 64 * 1024


def test_deep_nesting_streams_without_recursion() -> None:
    """The streaming serialiser also handles values nested deeper than the recursion limit."""
    value: list[object] = []
    for _ in range(20_000):
        value = [value]
    assert "".join(iter_dumps(value, 100)) == "[" * 20_001 + "]" * 20_001


_ORG_JSON_ESCAPES = re.compile('[\\\\"\x00-\x1f\x80-\x9f\u2000-\u20ff]|</')
_ORG_JSON_SHORT = {"\\": "\\\\", '"': '\\"', "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _reference_quote(value: str) -> str:
    """org.json's quote as one regular expression: every escape decided character by character."""

    def escape(match: re.Match[str]) -> str:
        text = match.group()
        if text == "</":
            return "<\\/"
        return _ORG_JSON_SHORT.get(text, f"\\u{ord(text):04x}")

    return '"' + _ORG_JSON_ESCAPES.sub(escape, value) + '"'


_SPECIAL = st.characters(min_codepoint=0, max_codepoint=0x20FF) | st.sampled_from(list('<</\\"\x85\u2000\u20ff\u2100'))


@given(st.text(alphabet=_SPECIAL))
def test_quote_matches_the_character_by_character_reference(value: str) -> None:
    """The replacement-based quote escapes exactly as a per-character org.json escaper does."""
    assert quote(value) == _reference_quote(value)
