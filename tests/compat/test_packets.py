"""Tests of the legacy line framing: class names, b64 lines, packet field checks and the bounded line splitter."""

from __future__ import annotations

import base64
import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailiverse.compat import packets
from mailiverse.compat.packets import (
    LineSplitter,
    LineTooLong,
    PacketError,
    decode_line,
    decode_packet,
    encode_line,
    encode_packet,
    frame_line,
    parse_line,
)

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
SRP_DOC: dict[str, Any] = json.loads((VECTORS / "srp.json").read_text(encoding="utf-8"))
LOGIN_MESSAGES = [m for case in SRP_DOC["cases"] for m in case["login_messages"]]


def test_class_names_are_the_original_type_tags() -> None:
    """The Java class names are kept byte for byte, '$' and the 'Authetication' misspelling included."""
    assert packets.PACKET1_CLIENT_HELLO == "core.srp.SRPPackets$Packet1_ClientSendsHello"
    assert packets.PACKET2_SERVER_SALT == "core.srp.SRPPackets$Packet2_ServerSendSalt"
    assert packets.PACKET3_CLIENT_PUBLIC_KEY == "core.srp.SRPPackets$Packet3_ClientSendPublicKey"
    assert packets.PACKET4_SERVER_PUBLIC_KEY == "core.srp.SRPPackets$Packet4_ServerSendPublicKey"
    assert packets.PACKET5_CLIENT_EVIDENCE == "core.srp.SRPPackets$Packet5_ClientSendEvidence"
    assert packets.PACKET6_SERVER_EVIDENCE == "core.srp.SRPPackets$Packet6_ServerSendEvidenceAndPayload"
    assert packets.PACKET_INIT_CREATE == "core.srp.SRPPackets$PacketInit_ClientPreAutheticationInitialization"
    assert packets.PACKET_INIT_TEST_CREATE == "core.srp.SRPPackets$PacketInit_ClientTestCreate"
    assert packets.PACKET_INIT_ENCRYPTED == "core.srp.SRPPackets$PacketInit_EncryptedPacket"
    assert packets.PACKET_INIT_SERVER_RESPONSE == "core.srp.SRPPackets$PacketInit_ServerResponse"
    assert packets.MESSAGE_GET == "core.client.messages.Get"
    assert packets.MESSAGE_PUT == "core.client.messages.Put"
    assert packets.MESSAGE_DELETE == "core.client.messages.Delete"
    assert packets.MESSAGE_RESPONSE == "core.client.messages.Response"
    assert (packets.KEY_SERVER_MAX_LINE, packets.MAIL_SERVER_MAX_LINE) == (
        50_000,
        100_000,
    )


@pytest.mark.parametrize("message", LOGIN_MESSAGES, ids=lambda m: m["text"][:60])
def test_vector_lines_frame_and_parse(message: dict[str, Any]) -> None:
    """Every recorded login text frames to its wire line, and the wire line parses back to the text."""
    wire = message["wire_line"].encode("ascii")
    assert frame_line(message["text"]) == wire
    assert parse_line(wire, packets.KEY_SERVER_MAX_LINE) == message["text"]
    class_name, fields = decode_line(wire, packets.KEY_SERVER_MAX_LINE)
    assert encode_packet(class_name, fields) == message["text"]


@given(st.text(min_size=1, max_size=200))
def test_frame_parse_round_trip(text: str) -> None:
    """Any Unicode text survives framing, with or without CR before the newline."""
    line = frame_line(text)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert parse_line(line, 10_000) == text
    assert parse_line(line[:-1] + b"\r\n", 10_000) == text
    assert parse_line(line[:-1], 10_000) == text


def test_parse_line_length_bound_is_exact() -> None:
    """A line of exactly max_length characters passes; one more is LineTooLong."""
    body = base64.b64encode(b"x" * 30)  # 40 characters
    assert parse_line(body + b"\n", 40) == "x" * 30
    with pytest.raises(LineTooLong):
        parse_line(body + b"\n", 39)


@pytest.mark.parametrize(
    ("line", "why"),
    [
        (b"\n", "empty"),
        (b"YWJj*GVm\n", "base64"),
        (b"YWJjZA\n", "base64"),
        (b"YWJjZR==\n", "canonical"),
        (b"YWJj ZGVm\n", "base64"),
        (b"YW\xffJj\n", "base64"),
        (base64.b64encode(b"\xff\xfe") + b"\n", "UTF-8"),
    ],
)
def test_parse_line_rejects_malformed(line: bytes, why: str) -> None:
    """Empty lines, bad or non-canonical base64 and non-UTF-8 payloads raise PacketError saying so."""
    with pytest.raises(PacketError) as raised:
        parse_line(line, 1000)
    assert why in str(raised.value)


@pytest.mark.parametrize(
    "text",
    [
        "no envelope at all",
        "core.srp.SRPPackets$Packet3_ClientSendPublicKey!{not json",
        "core.srp.SRPPackets$Packet3_ClientSendPublicKey![1,2]",
        'core.srp.SRPPackets$Packet3_ClientSendPublicKey!{"publicKey":5}',
        'core.srp.SRPPackets$Packet3_ClientSendPublicKey!{"public":"AA=="}',
        'core.srp.SRPPackets$Packet9_Unknown!{"publicKey":"AA=="}',
        'java.lang.Object!{"publicKey":"AA=="}',
        "null",
        'core.srp.SRPPackets$PacketInit_ServerResponse!{"succeeded":1}',
        'core.srp.SRPPackets$PacketInit_ServerResponse!{"succeeded":true,"reason":null}',
        'core.srp.SRPPackets$Packet1_ClientSendsHello!{"user":"","version":"2.0"}',
        'core.srp.SRPPackets$Packet1_ClientSendsHello!{"user":"' + "u" * 400 + '","version":"2.0"}',
    ],
)
def test_decode_packet_rejects_malformed(text: str) -> None:
    """Bad JSON, unknown classes, missing fields, wrong types and bad user lengths are PacketErrors."""
    with pytest.raises(PacketError):
        decode_packet(text)


def test_decode_packet_enforces_expected_class() -> None:
    """A valid packet of another class than the one expected is refused."""
    text = encode_packet(packets.PACKET5_CLIENT_EVIDENCE, {"evidence": "AQ=="})
    assert decode_packet(text, packets.PACKET5_CLIENT_EVIDENCE) == (
        packets.PACKET5_CLIENT_EVIDENCE,
        {"evidence": "AQ=="},
    )
    with pytest.raises(PacketError):
        decode_packet(text, packets.PACKET3_CLIENT_PUBLIC_KEY)


def test_decode_packet_keeps_only_known_fields() -> None:
    """Unknown fields are dropped (lenient reading), known ones kept with their values."""
    text = 'core.client.messages.Put!{"block":"eA==","junk":[1]}'
    assert decode_packet(text) == (packets.MESSAGE_PUT, {"block": "eA=="})
    assert decode_packet("core.client.messages.Get!{}") == (packets.MESSAGE_GET, {})
    assert decode_packet("core.client.messages.Response!{}") == (
        packets.MESSAGE_RESPONSE,
        {},
    )


def test_encode_packet_checks_fields() -> None:
    """Encoding refuses unknown classes and missing or mistyped fields."""
    with pytest.raises(PacketError):
        encode_packet("core.Unknown", {})
    with pytest.raises(PacketError):
        encode_packet(packets.PACKET1_CLIENT_HELLO, {"user": "a"})
    with pytest.raises(PacketError):
        encode_packet(packets.PACKET_INIT_SERVER_RESPONSE, {"succeeded": "yes"})
    line = encode_line(packets.PACKET_INIT_SERVER_RESPONSE, {"succeeded": False, "reason": "taken"})
    assert (
        base64.b64decode(line) == b'core.srp.SRPPackets$PacketInit_ServerResponse!{"succeeded":false,"reason":"taken"}'
    )


def test_splitter_handles_arbitrary_chunking() -> None:
    """Lines split across feeds are reassembled; CR is dropped and empty lines are skipped."""
    splitter = LineSplitter(100)
    assert splitter.feed(b"ab") == []
    assert splitter.feed(b"c\r\n\n\r\nde") == [b"abc"]
    assert splitter.pending == 2
    assert splitter.feed(b"f\ng\nh") == [b"def", b"g"]
    assert splitter.feed(b"\n") == [b"h"]
    assert splitter.pending == 0


@given(
    lines=st.lists(
        st.binary(min_size=1, max_size=50).map(lambda b: b.replace(b"\n", b"x").replace(b"\r", b"y")),
        max_size=20,
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=10),
)
def test_splitter_is_independent_of_chunk_boundaries(lines: list[bytes], cuts: list[int]) -> None:
    """However a stream is cut into feeds, the same lines come out."""
    stream = b"".join(line + b"\n" for line in lines)
    points = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    splitter = LineSplitter(50)
    out: list[bytes] = []
    for start, end in itertools.pairwise(points):
        out += splitter.feed(stream[start:end])
    assert out == lines
    assert splitter.pending == 0


def test_splitter_rejects_overlong_line_without_buffering_it() -> None:
    """An unterminated line longer than the limit raises as soon as it exceeds it, then stays broken."""
    splitter = LineSplitter(10)
    assert splitter.feed(b"0123456789") == []
    with pytest.raises(LineTooLong):
        splitter.feed(b"ab")
    assert splitter.pending == 0
    with pytest.raises(LineTooLong):
        splitter.feed(b"\n")


def test_splitter_limit_is_exact() -> None:
    """A line of exactly max_length (plus CR) passes; one byte more in a complete line fails."""
    assert LineSplitter(10).feed(b"0123456789\r\n") == [b"0123456789"]
    with pytest.raises(LineTooLong):
        LineSplitter(10).feed(b"0123456789a\n")
    with pytest.raises(LineTooLong):
        LineSplitter(10).feed(b"ok\n" + b"x" * 12)


def test_splitter_mail_server_limit() -> None:
    """The MailServer bound accepts a 100,000-character line and refuses a longer one in small feeds."""
    splitter = LineSplitter(packets.MAIL_SERVER_MAX_LINE)
    assert splitter.feed(b"A" * 100_000 + b"\n") == [b"A" * 100_000]
    with pytest.raises(LineTooLong):
        for _ in range(200):
            splitter.feed(b"B" * 1000)
    assert splitter.pending == 0
