"""Tests of the RSA-wrapped sign-up and availability-test packets and the plain server response."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from mailiverse.compat import packets, signup
from mailiverse.compat.signup import (
    InitRequest,
    SignupError,
    build_create_packet,
    build_test_create_packet,
    create_inner_text,
    decrypt_init_text,
    open_init_packet,
    server_response,
)
from mailiverse.compat.srp import N, make_verifier, sint, tc
from mailiverse.crypto.keys import (
    generate_private_key,
    load_private_key,
    load_public_key,
)
from mailiverse.crypto.rsaaes import encrypt_v1

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
SRP_DOC: dict[str, Any] = json.loads((VECTORS / "srp.json").read_text(encoding="utf-8"))
KEYS = {k["id"]: k for k in json.loads((VECTORS / "rsa_keys.json").read_text(encoding="utf-8"))["keys"]}
CASES = SRP_DOC["cases"]
CASE_IDS = [c["user"] for c in CASES]


def server_keys(key_id: str = "java-server-key") -> tuple[Any, Any]:
    entry = KEYS[key_id]
    private = load_private_key(base64.b64decode(entry["private_pkcs8_der_b64"]))
    public = load_public_key(base64.b64decode(entry["public_x509_spki_der_b64"]))
    return private, public


PRIVATE, PUBLIC = server_keys()
VK = bytes(range(1, 33))


def h(text: str) -> int:
    return sint(bytes.fromhex(text))


def wrap_inner(inner: str) -> str:
    return signup.wrap_encrypted(PUBLIC, inner)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_vector_signup_line_opens(case: dict[str, Any]) -> None:
    """The recorded sign-up line decrypts with the server key to the recorded inner packet and its fields."""
    part = case["signup"]
    private, _ = server_keys(part["server_key_id"])
    text = packets.parse_line(part["wire_line"].encode("ascii"), packets.MAIL_SERVER_MAX_LINE)
    assert decrypt_init_text(private, text) == part["inner_plaintext_text"]
    request = open_init_packet(private, text)
    assert request == InitRequest(
        "create",
        case["user"],
        "2.0",
        v=h(case["v_hex"]),
        s=h(case["salt_s_hex"]),
        captcha_token=part["captcha_token"],
    )


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_vector_inner_text_rebuilt_exactly(case: dict[str, Any]) -> None:
    """From the VerificationKey, salt and token we write the recorded inner text byte for byte."""
    s, v = make_verifier(bytes.fromhex(case["verification_key_hex"]), h(case["salt_s_hex"]))
    inner = create_inner_text(case["user"], s, v, case["signup"]["captcha_token"])
    assert inner == case["signup"]["inner_plaintext_text"]


@pytest.mark.parametrize("token", ["captcha-token-1", None])
def test_create_packet_round_trip(token: str | None) -> None:
    """A packet we build opens to the same user, salt, verifier and token (or none)."""
    text = build_create_packet(PUBLIC, "erin@example.com", VK, captcha_token=token, salt=123456789)
    request = open_init_packet(PRIVATE, text)
    s, v = make_verifier(VK, 123456789)
    assert request == InitRequest("create", "erin@example.com", "2.0", v=v, s=s, captcha_token=token)
    assert text.startswith(packets.PACKET_INIT_ENCRYPTED + "!")


def test_create_packet_without_token_sends_null_extra() -> None:
    """Without a token, extra is b64("null"), as the original web client sends with captcha off."""
    inner = decrypt_init_text(PRIVATE, build_create_packet(PUBLIC, "erin", VK))
    fields = packets.decode_expected_packet(inner, packets.PACKET_INIT_CREATE)
    assert base64.b64decode(fields["extra"]) == b"null"
    with_token = decrypt_init_text(PRIVATE, build_create_packet(PUBLIC, "erin", VK, captcha_token="t"))
    extra = packets.decode_expected_packet(with_token, packets.PACKET_INIT_CREATE)["extra"]
    assert base64.b64decode(extra) == b"java.lang.String!t"


def test_create_packet_draws_fresh_salt() -> None:
    """Without a given salt every sign-up gets a new salt in [2, N-1], and v matches it."""
    first = open_init_packet(PRIVATE, build_create_packet(PUBLIC, "erin", VK))
    second = open_init_packet(PRIVATE, build_create_packet(PUBLIC, "erin", VK))
    assert first.s != second.s
    for request in (first, second):
        assert request.s is not None and 2 <= request.s <= N - 1
        assert request.v == make_verifier(VK, request.s)[1]


def test_test_create_packet_round_trip() -> None:
    """The availability test opens to kind 'test' with the user and no verifier."""
    request = open_init_packet(PRIVATE, build_test_create_packet(PUBLIC, "frank@example.com"))
    assert request == InitRequest("test", "frank@example.com", "2.0")


def test_accepts_reordered_json_from_other_writers() -> None:
    """Key order inside the inner packet is not significant."""
    s, v = make_verifier(VK, 99)
    fields = {
        "user": "gina",
        "version": "2.0",
        "extra": base64.b64encode(b"null").decode(),
        "v": base64.b64encode(tc(v)).decode(),
        "s": base64.b64encode(tc(s)).decode(),
    }
    inner = packets.PACKET_INIT_CREATE + "!" + json.dumps(fields)
    assert open_init_packet(PRIVATE, wrap_inner(inner)) == InitRequest("create", "gina", "2.0", v=v, s=s)


def _flip(text: str, position: int) -> str:
    blob = bytearray(
        base64.b64decode(packets.decode_expected_packet(text, packets.PACKET_INIT_ENCRYPTED)["encryptedBlock"])
    )
    blob[position] ^= 0x01
    return packets.encode_packet(
        packets.PACKET_INIT_ENCRYPTED,
        {"encryptedBlock": base64.b64encode(bytes(blob)).decode()},
    )


def _inner_with(**changes: Any) -> str:
    fields: dict[str, Any] = {
        "s": base64.b64encode(tc(5)).decode(),
        "v": base64.b64encode(tc(7)).decode(),
        "extra": base64.b64encode(b"null").decode(),
        "version": "2.0",
        "user": "hal",
    }
    fields.update(changes)
    fields = {k: v for k, v in fields.items() if v is not None}
    return packets.PACKET_INIT_CREATE + "!" + json.dumps(fields)


GOOD = build_create_packet(PUBLIC, "hal", VK, captcha_token="tok")
BAD_PACKETS = {
    "flipped RSA block": _flip(GOOD, 10),
    "flipped AES block": _flip(GOOD, -1),
    "flipped version byte": _flip(GOOD, 0),
    "other server key": build_create_packet(
        load_public_key(base64.b64decode(KEYS["java-user-key"]["public_x509_spki_der_b64"])),
        "hal",
        VK,
    ),
    "not base64": packets.PACKET_INIT_ENCRYPTED + '!{"encryptedBlock":"***"}',
    "empty block": packets.PACKET_INIT_ENCRYPTED + '!{"encryptedBlock":""}',
    "wrong outer class": packets.PACKET1_CLIENT_HELLO + '!{"user":"hal","version":"2.0"}',
    "outer not json": packets.PACKET_INIT_ENCRYPTED + "!{",
    "inner wrong class": wrap_inner(packets.PACKET1_CLIENT_HELLO + '!{"user":"hal","version":"2.0"}'),
    "inner not json": wrap_inner(packets.PACKET_INIT_CREATE + "!{oops"),
    "inner not utf8": packets.encode_packet(
        packets.PACKET_INIT_ENCRYPTED,
        {"encryptedBlock": base64.b64encode(encrypt_v1(PUBLIC, b"\xff\xfe")).decode()},
    ),
    "v zero": wrap_inner(_inner_with(v=base64.b64encode(tc(0)).decode())),
    "v equals N": wrap_inner(_inner_with(v=base64.b64encode(tc(N)).decode())),
    "s negative": wrap_inner(_inner_with(s=base64.b64encode(tc(-3)).decode())),
    "s missing": wrap_inner(_inner_with(s=None)),
    "extra not a string": wrap_inner(_inner_with(extra=base64.b64encode(b'java.lang.Integer!{"x":1}').decode())),
    "extra not base64": wrap_inner(_inner_with(extra="%%%")),
    "token too long": wrap_inner(_inner_with(extra=base64.b64encode(b"java.lang.String!" + b"t" * 600).decode())),
}


@pytest.mark.parametrize("name", sorted(BAD_PACKETS))
def test_bad_packets_fail_with_one_generic_error(name: str) -> None:
    """Every way a sign-up packet can be wrong gives the same SignupError message: no decryption oracle."""
    with pytest.raises(SignupError) as raised:
        open_init_packet(PRIVATE, BAD_PACKETS[name])
    assert str(raised.value) == signup.GENERIC_MESSAGE
    assert raised.value.__cause__ is None


def test_good_reference_packet_opens() -> None:
    """The unmodified packet the negative cases start from does open."""
    assert open_init_packet(PRIVATE, GOOD).captcha_token == "tok"


def test_opens_with_lenient_web_key() -> None:
    """A server key stored with the web's non-minimal DER still opens packets built to it."""
    private, public = server_keys("web-encoded-nonminimal-der-key")
    request = open_init_packet(private, build_test_create_packet(public, "ivy"))
    assert request.kind == "test" and request.user == "ivy"


def test_fresh_key_round_trip() -> None:
    """Packets work with any freshly generated server key, not only the vector key."""
    private = generate_private_key(2048)
    text = build_create_packet(private.public_key(), "jo", VK, captcha_token="x")
    assert open_init_packet(private, text).user == "jo"


def test_server_response_texts() -> None:
    """The plain server response is the typed envelope with succeeded and an optional reason."""
    assert server_response(True, None) == 'core.srp.SRPPackets$PacketInit_ServerResponse!{"succeeded":true}'
    text = server_response(False, "User name taken")
    assert text == 'core.srp.SRPPackets$PacketInit_ServerResponse!{"succeeded":false,"reason":"User name taken"}'
    assert packets.decode_packet(text) == (
        packets.PACKET_INIT_SERVER_RESPONSE,
        {"succeeded": False, "reason": "User name taken"},
    )
