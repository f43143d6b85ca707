"""What a worker tells the appliance for the screener (the From address and the X-Hashcash stamps) is hostile
output: only a plain address and short printable stamps get through, and at most a few of those."""

from __future__ import annotations

import pytest

from mailiverse.delivery.sealing import MAX_STAMPS, SealedMeta, header_stamps, plain_address


@pytest.mark.parametrize(
    ("value", "plain"),
    [
        ("Ann@Remote.Test", "ann@remote.test"),
        ("a b@remote.test", ""),
        ('"a"@remote.test', ""),
        ("a@remote.test\r\nX: y", ""),
        ("ä@remote.test", ""),
        ("a@@remote.test", ""),
        ("a@remote test", ""),
        ("@remote.test", ""),
        ("a" * 250 + "@remote.test", ""),
        (7, ""),
    ],
)
def test_only_a_plain_address_is_the_sender(value: object, plain: str) -> None:
    assert plain_address(value) == plain
    assert SealedMeta.from_wire({"size": 1, "from_address": value}).from_address == plain


def test_stamps_are_short_printable_lines_and_few() -> None:
    meta = SealedMeta.from_wire({"size": 1, "stamps": ["1:20:x", "bad\r\nline", "x" * 600, 5, "1:20:y"]})
    assert meta.stamps == ("1:20:x", "1:20:y")
    with pytest.raises(ValueError):
        SealedMeta.from_wire({"size": 1, "stamps": ["s"] * (MAX_STAMPS + 1)})
    with pytest.raises(ValueError):
        SealedMeta.from_wire({"size": 1, "stamps": "1:20:x"})


def test_the_header_stamps_are_read_from_the_header_section_only() -> None:
    raw = (
        b"X-Hashcash: 1:20:a\r\nx-hashcash:\r\n 1:20:b\r\nSubject: s\r\n\r\nX-Hashcash: 1:20:in-the-body\r\n"
        + b"".join(b"X-Hashcash: 1:20:%d\r\n" % i for i in range(3))
    )
    assert header_stamps(raw) == ("1:20:a", "1:20:b")
    many = b"".join(b"X-Hashcash: 1:20:%d\r\n" % i for i in range(20)) + b"\r\nbody"
    assert len(header_stamps(many)) == MAX_STAMPS
    assert header_stamps(b"Subject: none\r\n\r\n") == ()
