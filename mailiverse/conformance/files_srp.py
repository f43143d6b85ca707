"""Conformance checker for ``srp.json``: the legacy SRP group, full login transcripts and sign-up packets.

Every value is recomputed from the vector's inputs (password, salt, a, b, IVs and the
server key) with ``mailiverse.compat`` and compared byte for byte; both ends of each
transcript are replayed, our client against the recorded server lines and our server
against the recorded client lines.  Fields nobody checks make the case fail.

Why one module of this size: one vector file (``srp.json``) whose transcripts are replayed from
both ends; the client and server replays share the packet parsing and must stay side by side.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from mailiverse.compat import packets, signup
from mailiverse.compat.srp import (
    K_MULTIPLIER,
    N_BITS,
    G,
    H,
    LegacySrpClient,
    LegacySrpServer,
    N,
    SessionCipher,
    client_evidence,
    combine,
    make_verifier,
    server_evidence,
    session_key,
    sint,
    tc,
)
from mailiverse.conformance.core import Case, NotUnderstood, checker, current_vector_file

#: Keys that describe a vector and carry nothing to check.
DESCRIPTIVE_KEYS = frozenset({"source", "origin", "note", "notes", "comment", "description"})

GROUP_KEYS = frozenset({"N_hex", "N_bits", "g", "k_hex", "k_decimal"})
CASE_INPUT_KEYS = frozenset({"user", "password", "verification_key_hex", "salt_s_hex", "a_hex", "b_hex"})
CASE_VALUE_KEYS = (
    "x_hex",
    "v_hex",
    "A_hex",
    "B_hex",
    "u_hex",
    "S_hex",
    "M1_hex",
    "M2_hex",
    "K_hex",
)
CASE_KEYS = CASE_INPUT_KEYS | set(CASE_VALUE_KEYS) | {"signs", "login_messages", "post_auth_messages", "signup"}
SIGNUP_KEYS = frozenset({"server_key_id", "captcha_token", "inner_plaintext_text", "wire_line"})
LOGIN_MESSAGE_KEYS = frozenset({"from", "text", "wire_line"})
POST_AUTH_MESSAGE_KEYS = frozenset({"from", "plain_text", "wire_line", "iv_hex"})

CLIENT_MESSAGES = (packets.MESSAGE_GET, packets.MESSAGE_PUT, packets.MESSAGE_DELETE)
SERVER_MESSAGES = (packets.MESSAGE_RESPONSE,)
#: The order of the six login packets.
LOGIN_CLASSES = (
    packets.PACKET1_CLIENT_HELLO,
    packets.PACKET2_SERVER_SALT,
    packets.PACKET3_CLIENT_PUBLIC_KEY,
    packets.PACKET4_SERVER_PUBLIC_KEY,
    packets.PACKET5_CLIENT_EVIDENCE,
    packets.PACKET6_SERVER_EVIDENCE,
)


def _tc_hex(text: Any) -> int:
    """A ``*_hex`` SRP integer: lowercase hex of the two's-complement bytes."""
    if not isinstance(text, str) or not text or len(text) % 2:
        raise AssertionError(f"not two's-complement hex: {text!r}")
    return sint(bytes.fromhex(text))


def _eq(what: str, ours: Any, theirs: Any) -> None:
    if ours != theirs:
        raise AssertionError(f"{what}: computed {ours!r}, vector has {theirs!r}")


def _unknown(label: str, found: dict[str, Any], known: frozenset[str] | set[str]) -> Iterator[Case]:
    extra = sorted(set(found) - set(known) - DESCRIPTIVE_KEYS)
    if extra:

        def run() -> None:
            raise AssertionError(f"fields not understood: {', '.join(extra)}")

        yield Case(f"{label} fields", run)


def _vector_directory() -> Path | None:
    """The directory of the file being checked (``srp.json`` names keys in ``rsa_keys.json``)."""
    try:
        return current_vector_file().resolve().parent
    except NotUnderstood:
        return None


def _find_key(directory: Path | None, key_id: str) -> dict[str, Any]:
    if directory is None:
        raise AssertionError("cannot locate rsa_keys.json: the vector file's directory is unknown")
    doc = json.loads((directory / "rsa_keys.json").read_text(encoding="utf-8"))
    for entry in doc.get("keys", []):
        if isinstance(entry, dict) and entry.get("id") == key_id:
            return entry
    raise AssertionError(f"key {key_id!r} not in rsa_keys.json")


def _group_cases(group: Any) -> Iterator[Case]:
    if not isinstance(group, dict):
        raise NotUnderstood("group is not an object")
    yield from _unknown("group", group, GROUP_KEYS)
    checks: dict[str, Callable[[], None]] = {
        "N_hex": lambda: _eq("N", N, int(group["N_hex"], 16)),
        "N_bits": lambda: _eq("bits of N", N.bit_length(), int(group["N_bits"])),
        "g": lambda: _eq("g", G, int(group["g"])),
        "k_hex": lambda: _eq("k", K_MULTIPLIER, _tc_hex(group["k_hex"])),
        "k_decimal": lambda: _eq("k", K_MULTIPLIER, int(group["k_decimal"])),
    }
    for key, run in checks.items():
        if key in group:
            yield Case(f"group {key}", run)

    def group_shape() -> None:
        _eq("N bit length constant", N.bit_length(), N_BITS)
        _eq("k = H(combine(N, g))", H(combine(N, G)), K_MULTIPLIER)
        _eq("g^((N-1)/2) mod N", pow(G, (N - 1) // 2, N), N - 1)
        for base in (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37):
            _eq("N is a probable prime", pow(base, N - 1, N), 1)
            _eq(
                "(N-1)/2 is a probable prime",
                pow(base, (N - 1) // 2 - 1, (N - 1) // 2),
                1,
            )

    yield Case("group safe prime and generator", group_shape)


class _Derived:
    """Every value of one login, computed from the case's inputs only."""

    def __init__(self, case: dict[str, Any]) -> None:
        self.user: str = case["user"]
        self.verification_key = bytes.fromhex(case["verification_key_hex"])
        self.s, self.v = make_verifier(self.verification_key, _tc_hex(case["salt_s_hex"]))
        self.a = _tc_hex(case["a_hex"])
        self.b = _tc_hex(case["b_hex"])
        client = LegacySrpClient(self.user, self.verification_key, a=self.a)
        client.hello()
        client.receive_salt({"salt": base64.b64encode(tc(self.s)).decode(), "version": "2.0"})
        server = LegacySrpServer(self.user, self.s, self.v, b=self.b)
        self.A = client.A
        self.B = server.B
        client.receive_server_public_key({"publicKey": base64.b64encode(tc(self.B)).decode()})
        assert client.x is not None and client.u is not None and client.S is not None
        assert client.exponent is not None
        self.x, self.u, self.exponent = client.x, client.u, client.exponent
        self.S_client = client.S
        self.S_server = pow(self.A * pow(self.v, self.u, N), self.b, N)
        self.M1 = client_evidence(self.A, self.B, self.S_client)
        self.M2 = server_evidence(self.A, self.M1, self.S_client)
        self.K = session_key(self.S_client)


def _value_cases(label: str, case: dict[str, Any], derive: Callable[[], _Derived]) -> Iterator[Case]:
    def check(key: str) -> Callable[[], None]:
        def run() -> None:
            d = derive()
            if key == "K_hex":
                _eq("K", d.K.hex(), case[key])
                return
            if key == "S_hex":
                _eq("S (server side)", tc(d.S_server).hex(), case[key])
            value = {
                "x_hex": d.x,
                "v_hex": d.v,
                "A_hex": d.A,
                "B_hex": d.B,
                "u_hex": d.u,
                "S_hex": d.S_client,
                "M1_hex": d.M1,
                "M2_hex": d.M2,
            }[key]
            _eq(key[:-4], tc(value).hex(), case[key])

        return run

    for key in CASE_VALUE_KEYS:
        if key in case:
            yield Case(f"{label} {key[:-4]}", check(key))


def _sign_cases(label: str, signs: Any, derive: Callable[[], _Derived]) -> Iterator[Case]:
    if not isinstance(signs, dict):
        raise NotUnderstood("signs is not an object")
    tests: dict[str, Callable[[_Derived], bool]] = {
        "x_negative": lambda d: d.x < 0,
        "u_negative": lambda d: d.u < 0,
        "M1_negative": lambda d: d.M1 < 0,
        "M2_negative": lambda d: d.M2 < 0,
        "client_exponent_a_plus_ux_negative": lambda d: d.exponent < 0,
        "verification_key_as_signed_int_negative": lambda d: sint(d.verification_key) < 0,
    }
    yield from _unknown(f"{label} signs", signs, frozenset(tests))

    def check(key: str, test: Callable[[_Derived], bool]) -> Callable[[], None]:
        return lambda: _eq(key, test(derive()), signs[key])

    for key, test in tests.items():
        if key in signs:
            yield Case(f"{label} sign {key}", check(key, test))


def _check_login_shape(messages: Any) -> list[dict[str, Any]]:
    if not isinstance(messages, list) or len(messages) != len(LOGIN_CLASSES):
        raise AssertionError("login_messages must hold the six login packets")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or set(message) - DESCRIPTIVE_KEYS != LOGIN_MESSAGE_KEYS:
            raise AssertionError(f"login_messages[{i}] has unexpected fields")
        expected_from = "client" if i % 2 == 0 else "server"
        _eq(f"login_messages[{i}].from", expected_from, message["from"])
    return messages


def _read_wire(message: dict[str, Any], index: int) -> dict[str, Any]:
    """Check a recorded login line against its text, and parse it as its packet."""
    wire = message["wire_line"]
    _eq(
        f"framing of message {index}",
        packets.frame_line(message["text"]).decode("ascii"),
        wire,
    )
    text = packets.parse_line(wire.encode("ascii"), packets.MAIL_SERVER_MAX_LINE)
    _eq(f"parsed line {index}", text, message["text"])
    return packets.decode_expected_packet(text, LOGIN_CLASSES[index])


def _emit(index: int, fields: dict[str, Any], message: dict[str, Any]) -> None:
    """Compare one of our packets with the recorded text and wire line."""
    text = packets.encode_packet(LOGIN_CLASSES[index], fields)
    _eq(f"text of message {index}", text, message["text"])
    _eq(
        f"wire line of message {index}",
        packets.frame_line(text).decode("ascii"),
        message["wire_line"],
    )


def _login_as_client(case: dict[str, Any]) -> None:
    messages = _check_login_shape(case["login_messages"])
    client = LegacySrpClient(
        case["user"],
        bytes.fromhex(case["verification_key_hex"]),
        a=_tc_hex(case["a_hex"]),
    )
    _emit(0, client.hello(), messages[0])
    _emit(2, client.receive_salt(_read_wire(messages[1], 1)), messages[2])
    _emit(4, client.receive_server_public_key(_read_wire(messages[3], 3)), messages[4])
    key = client.receive_server_evidence(_read_wire(messages[5], 5))
    if not client.authenticated:
        raise AssertionError("client did not accept the server's evidence")
    if "K_hex" in case:
        _eq("client K", key.hex(), case["K_hex"])


def _login_as_server(case: dict[str, Any]) -> None:
    messages = _check_login_shape(case["login_messages"])
    verification_key = bytes.fromhex(case["verification_key_hex"])
    s, v = make_verifier(verification_key, _tc_hex(case["salt_s_hex"]))
    hello = _read_wire(messages[0], 0)
    _eq("hello user", hello["user"], case["user"])
    # The salt packet echoes the version stored with the account; the vector is our only source.
    stored_version = packets.decode_expected_packet(messages[1]["text"], LOGIN_CLASSES[1])["version"]
    server = LegacySrpServer(case["user"], s, v, b=_tc_hex(case["b_hex"]), version=stored_version)
    _emit(1, server.receive_hello(hello), messages[1])
    _emit(3, server.receive_client_public_key(_read_wire(messages[2], 2)), messages[3])
    _emit(5, server.receive_client_evidence(_read_wire(messages[4], 4)), messages[5])
    if not server.authenticated or server.K is None:
        raise AssertionError("server did not accept the client's evidence")
    if "K_hex" in case:
        _eq("server K", server.K.hex(), case["K_hex"])


def _post_auth_case(message: Any, index: int, derive: Callable[[], _Derived]) -> Callable[[], None]:
    def run() -> None:
        if not isinstance(message, dict) or set(message) - DESCRIPTIVE_KEYS != POST_AUTH_MESSAGE_KEYS:
            raise AssertionError(f"post_auth_messages[{index}] has unexpected fields")
        sender = message["from"]
        allowed = {"client": CLIENT_MESSAGES, "server": SERVER_MESSAGES}.get(sender)
        if allowed is None:
            raise AssertionError(f"unknown sender {sender!r}")
        packets.decode_packet(message["plain_text"], *allowed)
        wire = message["wire_line"]
        if not wire.endswith("\n"):
            raise AssertionError("wire line lacks its newline")
        d = derive()
        iv = bytes.fromhex(message["iv_hex"])
        ours = SessionCipher(d.K, [iv]).encrypt_line(message["plain_text"]) + "\n"
        _eq("encrypted line", ours, wire)
        _eq(
            "decrypted line",
            SessionCipher(d.K).decrypt_line(wire),
            message["plain_text"],
        )
        _eq("embedded IV", base64.b64decode(wire)[:16].hex(), message["iv_hex"])

    return run


def _signup_cases(label: str, case: dict[str, Any], directory: Path | None) -> Iterator[Case]:
    part = case["signup"]
    if not isinstance(part, dict):
        raise NotUnderstood("signup is not an object")
    yield from _unknown(f"{label} signup", part, SIGNUP_KEYS)

    def keys() -> tuple[Any, Any]:
        from mailiverse.crypto.keys import load_private_key, load_public_key

        entry = _find_key(directory, part["server_key_id"])
        private = load_private_key(base64.b64decode(entry["private_pkcs8_der_b64"]))
        public = load_public_key(base64.b64decode(entry["public_x509_spki_der_b64"]))
        return private, public

    def expect_request(request: signup.InitRequest) -> None:
        _eq("user", request.user, case["user"])
        _eq("version", request.version, "2.0")
        if request.kind == "create":
            _eq("salt", request.s, _tc_hex(case["salt_s_hex"]))
            if "v_hex" in case:
                _eq("verifier", request.v, _tc_hex(case["v_hex"]))
            _eq(
                "verifier from the password",
                request.v,
                make_verifier(bytes.fromhex(case["verification_key_hex"]), request.s)[1],
            )
            if "captcha_token" in part:
                _eq("captcha token", request.captcha_token, part["captcha_token"])

    def inner_rebuilt() -> None:
        request = signup.parse_init_text(part["inner_plaintext_text"])
        expect_request(request)
        if request.kind == "create":
            assert request.s is not None and request.v is not None
            ours = signup.create_inner_text(case["user"], request.s, request.v, part.get("captcha_token"))
        else:
            ours = signup.availability_inner_text(case["user"])
        # org.json's key order is not significant, so compare the parsed packets.
        _eq(
            "inner packet",
            packets.decode_packet(ours),
            packets.decode_packet(part["inner_plaintext_text"]),
        )

    def wire_opened() -> None:
        private, _ = keys()
        text = packets.parse_line(part["wire_line"].encode("ascii"), packets.MAIL_SERVER_MAX_LINE)
        _eq(
            "decrypted inner text",
            signup.decrypt_init_text(private, text),
            part["inner_plaintext_text"],
        )
        expect_request(signup.open_init_packet(private, text))
        _eq("framing", packets.frame_line(text).decode("ascii"), part["wire_line"])

    def rebuilt_round_trip() -> None:
        private, public = keys()
        inner = part["inner_plaintext_text"]
        request = signup.parse_init_text(inner)
        if request.kind == "create":
            text = signup.build_create_packet(
                public,
                case["user"],
                bytes.fromhex(case["verification_key_hex"]),
                captcha_token=part.get("captcha_token"),
                salt=_tc_hex(case["salt_s_hex"]),
            )
        else:
            text = signup.build_test_create_packet(public, case["user"])
        _eq("our packet, reopened", signup.open_init_packet(private, text), request)
        _eq(
            "our inner packet",
            packets.decode_packet(signup.decrypt_init_text(private, text)),
            packets.decode_packet(inner),
        )

    if "inner_plaintext_text" in part:
        yield Case(f"{label} signup inner packet", inner_rebuilt)
        if "server_key_id" in part:
            yield Case(f"{label} signup rebuilt and reopened", rebuilt_round_trip)
    if "wire_line" in part and "server_key_id" in part:
        yield Case(f"{label} signup wire line opens", wire_opened)


def _case_checks(index: int, case: Any, directory: Path | None) -> Iterator[Case]:
    if not isinstance(case, dict):
        raise NotUnderstood(f"cases[{index}] is not an object")
    label = f"cases[{index}] ({case.get('user', '?')})"
    yield from _unknown(label, case, CASE_KEYS)
    missing = sorted(CASE_INPUT_KEYS - set(case))
    if missing:

        def lacking() -> None:
            raise AssertionError(f"inputs missing: {', '.join(missing)}")

        yield Case(f"{label} inputs", lacking)
        return

    cache: list[_Derived] = []

    def derive() -> _Derived:
        if not cache:
            cache.append(_Derived(case))
        return cache[0]

    def verification_key() -> None:
        from mailiverse.crypto.pbkdf import verification_key as derive_key

        _eq(
            "VerificationKey",
            derive_key(case["password"]).hex(),
            case["verification_key_hex"],
        )

    yield Case(f"{label} verification key", verification_key)
    yield from _value_cases(label, case, derive)
    if "signs" in case:
        yield from _sign_cases(label, case["signs"], derive)
    if "login_messages" in case:
        yield Case(f"{label} login as client", lambda: _login_as_client(case))
        yield Case(f"{label} login as server", lambda: _login_as_server(case))
    if "post_auth_messages" in case:
        messages = case["post_auth_messages"]
        if not isinstance(messages, list):
            raise NotUnderstood("post_auth_messages is not a list")
        for i, message in enumerate(messages):
            yield Case(f"{label} post-auth message {i}", _post_auth_case(message, i, derive))
    if "signup" in case:
        yield from _signup_cases(label, case, _vector_directory() if directory is None else directory)


@checker("srp", sections={"group", "cases"})
def check_srp(doc: dict[str, Any]) -> Iterator[Case]:
    """Yield one case per checkable value of the group and of every login case."""
    directory = _vector_directory()
    if "group" in doc:
        yield from _group_cases(doc["group"])
    cases = doc.get("cases")
    if cases is None:
        return
    if not isinstance(cases, list):
        raise NotUnderstood("cases is not a list")
    for index, case in enumerate(cases):
        yield from _case_checks(index, case, directory)
