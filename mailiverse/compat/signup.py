"""The legacy sign-up and availability-test packets, RSA-AES-wrapped to the mail-auth server key.

Client side: build the one-line ``PacketInit_EncryptedPacket`` text that carries the SRP
salt and verifier (docs/formats.md §6.8, docs/protocol.md §4.2).  Server side: open such a packet
into an :class:`InitRequest`, and write the plain-text ``PacketInit_ServerResponse``.
Opening fails with a single generic :class:`SignupError` whatever went wrong, so the
server offers no padding or Bleichenbacher oracle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from mailiverse.compat import packets
from mailiverse.compat.packets import (
    PACKET_INIT_CREATE,
    PACKET_INIT_ENCRYPTED,
    PACKET_INIT_SERVER_RESPONSE,
    PACKET_INIT_TEST_CREATE,
    PacketError,
)
from mailiverse.compat.srp import LOGIN_VERSION, N, Rng, make_verifier, sint, tc
from mailiverse.compat.typed import JAVA_STRING, decode_typed, encode_typed

#: The ``extra`` payload of a client that sends no captcha token.
NULL_EXTRA = "null"
#: Longest captcha token accepted.
MAX_CAPTCHA_CHARS = 512
#: Longest base64 ``v``/``s`` field accepted (honest values are 33 bytes, 44 characters).
MAX_INT_FIELD_CHARS = 200

GENERIC_MESSAGE = "invalid sign-up packet"


class SignupError(Exception):
    """A sign-up packet could not be opened; the message never says why."""

    def __init__(self) -> None:
        super().__init__(GENERIC_MESSAGE)


@dataclass(frozen=True)
class InitRequest:
    """What a client asked for before authentication: create an account, or test a name."""

    kind: Literal["create", "test"]
    user: str
    version: str
    v: int | None = None
    s: int | None = None
    captcha_token: str | None = None


def _b64_int(i: int) -> str:
    return packets.b64encode(tc(i))


def encode_extra(captcha_token: str | None) -> str:
    """``extra`` = b64(utf8("java.lang.String!<token>")), or b64("null") without a token."""
    inner = NULL_EXTRA if captcha_token is None else encode_typed(JAVA_STRING, captcha_token)
    return packets.b64encode(inner.encode("utf-8"))


def create_inner_text(user: str, salt: int, verifier: int, captcha_token: str | None = None) -> str:
    """The plaintext create packet, keys in the order the original's org.json writes them."""
    fields = {
        "s": _b64_int(salt),
        "v": _b64_int(verifier),
        "extra": encode_extra(captcha_token),
        "version": LOGIN_VERSION,
        "user": user,
    }
    return packets.encode_packet(PACKET_INIT_CREATE, fields)


def availability_inner_text(user: str) -> str:
    """The plaintext availability-test packet."""
    return packets.encode_packet(PACKET_INIT_TEST_CREATE, {"version": LOGIN_VERSION, "user": user})


def wrap_encrypted(
    server_public_key: Any,
    inner_text: str,
    *,
    aes_key: bytes | None = None,
    iv: bytes | None = None,
) -> str:
    """RSA-AES-encrypt ``inner_text`` to the server key and wrap it as ``PacketInit_EncryptedPacket``."""
    from mailiverse.crypto.rsaaes import encrypt_v1

    blob = encrypt_v1(server_public_key, inner_text.encode("utf-8"), aes_key=aes_key, iv=iv)
    return packets.encode_packet(PACKET_INIT_ENCRYPTED, {"encryptedBlock": packets.b64encode(blob)})


def build_create_packet(
    server_public_key: Any,
    user: str,
    verification_key: bytes,
    *,
    captcha_token: str | None = None,
    salt: int | None = None,
    rng: Rng | None = None,
) -> str:
    """The sign-up line text (before framing): a fresh salt unless given, and v from the VerificationKey."""
    s, v = make_verifier(verification_key, salt, rng)
    return wrap_encrypted(server_public_key, create_inner_text(user, s, v, captcha_token))


def build_test_create_packet(server_public_key: Any, user: str) -> str:
    """The availability-test line text (before framing)."""
    return wrap_encrypted(server_public_key, availability_inner_text(user))


def decrypt_init_text(server_private_key: Any, text: str) -> str:
    """Decrypt a ``PacketInit_EncryptedPacket`` to its inner text; any failure is :class:`SignupError`."""
    from mailiverse.crypto.rsaaes import decrypt

    try:
        fields = packets.decode_expected_packet(text, PACKET_INIT_ENCRYPTED)
        blob = packets.strict_b64decode(fields["encryptedBlock"])
        return decrypt(server_private_key, blob).decode("utf-8")
    except Exception:  # noqa: BLE001 - one generic error whatever failed
        raise SignupError() from None


def _decode_extra(extra: str) -> str | None:
    raw = packets.strict_b64decode(extra).decode("utf-8")
    if raw == NULL_EXTRA:
        return None
    class_name, token = decode_typed(raw)
    if class_name != JAVA_STRING or not isinstance(token, str):
        raise PacketError("extra is not a string")
    if not token or len(token) > MAX_CAPTCHA_CHARS:
        raise PacketError("captcha token has a bad length")
    return token


def _decode_int_field(text: str, *, below_n: bool) -> int:
    if len(text) > MAX_INT_FIELD_CHARS:
        raise PacketError("integer field too long")
    value = sint(packets.strict_b64decode(text))
    if value <= 0 or (below_n and value >= N):
        raise PacketError("integer field out of range")
    return value


def parse_init_text(inner_text: str) -> InitRequest:
    """Parse a decrypted create or test-create packet; any failure is :class:`SignupError`."""
    try:
        class_name, fields = packets.decode_packet(inner_text, PACKET_INIT_CREATE, PACKET_INIT_TEST_CREATE)
        if class_name == PACKET_INIT_TEST_CREATE:
            return InitRequest("test", fields["user"], fields["version"])
        return InitRequest(
            "create",
            fields["user"],
            fields["version"],
            v=_decode_int_field(fields["v"], below_n=True),
            s=_decode_int_field(fields["s"], below_n=False),
            captcha_token=_decode_extra(fields["extra"]),
        )
    except Exception:  # noqa: BLE001 - one generic error whatever failed
        raise SignupError() from None


def open_init_packet(server_private_key: Any, text: str) -> InitRequest:
    """Server side: decrypt and parse the first line's text of a sign-up or availability test."""
    return parse_init_text(decrypt_init_text(server_private_key, text))


def server_response(succeeded: bool, reason: str | None = None) -> str:
    """The plain-text ``PacketInit_ServerResponse`` text (before framing)."""
    fields: dict[str, Any] = {"succeeded": bool(succeeded)}
    if reason is not None:
        fields["reason"] = reason
    return packets.encode_packet(PACKET_INIT_SERVER_RESPONSE, fields)
