"""DATA framing, differentially: the server's run-at-a-time fast path against a line-by-line model of RFC 5321.

The model reads the stream as the server must: lines end at CRLF only; a line ``.`` ends the data;
a leading dot is removed; a line over the limit fails the message with 552, a bare CR or LF in a
line with 554 (the first failure wins), and the server reads on to the real end either way. Random
bodies built from dots, bare CRs and LFs, CRLFs and long runs, fed in random pieces, must give the
model's reply and, when accepted, exactly the model's bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from twisted.internet.testing import MemoryReactorClock

from mailiverse.testing import MemoryInbox
from tests.support.smtp_memory import GREETING, Session, make_factory

LINE_LIMIT = 80  # the smallest max_data_line SmtpLimits allows: long lines are easy to reach
CONTENT_LIMIT = LINE_LIMIT - 2 + 1  # CRLF excluded, one octet of dot-stuffing allowed
TOKENS = st.sampled_from([b"a", b"bc", b".", b"..", b"\r", b"\n", b"\r\n", b"\r\n.", b"x" * 40, b"y" * 79, b"\xff"])


def model(stream: bytes) -> tuple[str, bytes, bytes]:
    """(reply code, spooled bytes, what follows the end of data) for a DATA stream."""
    lines = stream.split(b"\r\n")
    failure: str | None = None
    out = []
    for index, line in enumerate(lines[:-1]):
        if line == b".":
            rest = b"\r\n".join(lines[index + 1 :])
            return failure or "250", b"".join(out), rest
        if len(line) > CONTENT_LIMIT:
            failure = failure or "552"
            continue
        if line.startswith(b"."):
            line = line[1:]
        if b"\r" in line or b"\n" in line:
            failure = failure or "554"
        out.append(line + b"\r\n")
    raise AssertionError("no end of data in the stream")


def _factory(tmp_path: Path) -> tuple[Any, MemoryInbox]:
    inbox = MemoryInbox(users={"alice": "alice"}, domains=["example.com"])
    return make_factory(inbox, MemoryReactorClock(), tmp_path, max_data_line=LINE_LIMIT), inbox


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tokens=st.lists(TOKENS, max_size=60), cuts=st.lists(st.integers(min_value=1, max_value=64), max_size=30))
def test_fast_path_matches_the_line_model(tmp_path: Path, tokens: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(tokens) + b"\r\n.\r\n"
    code, expected, rest = model(stream)
    assume(rest == b"")  # the first end of data is the one we appended
    factory, inbox = _factory(tmp_path)
    session = Session(factory)
    session.send(GREETING)
    session.send(b"MAIL FROM:<s@remote.org>\r\nRCPT TO:<alice@example.com>\r\nDATA\r\n")
    pieces, offset = [], 0
    for cut in cuts:
        pieces.append(stream[offset : offset + cut])
        offset += cut
    pieces.append(stream[offset:])
    replies: list[bytes] = []
    for piece in pieces:
        replies += session.send(piece)
    assert replies and replies[-1][:3].decode() == code, (replies, stream)
    if code == "250":
        [message] = inbox.delivered
        assert message.data.endswith(expected)
        assert message.data[: len(message.data) - len(expected)].startswith(b"Received: ")
    else:
        assert inbox.delivered == []
    assert session.send(b"NOOP\r\n") == [b"250 2.0.0 Ok"]  # the session goes on, in step
