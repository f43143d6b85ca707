"""org.json-compatible serialisation: escaping and member order."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from mailiverse.mime.jsonout import dumps, quote


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
