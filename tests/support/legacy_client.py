"""A compact original-Mailiverse client written from docs/protocol.md and docs/formats.md, to drive the server in tests.

It shares no framing or SRP code with the server (no ``mailiverse.compat``): its own
two's-complement helpers, interleaving ``combine``, signed SHA-256, AES-EmbedIV,
RSA-AES v1, MV signatures, and transports for TCP (plain or TLS) and WebSocket.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import zlib
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from cryptography.hazmat.primitives import padding as sym_padding
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from twisted.internet import defer, protocol
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol, wrapClientTLS
from twisted.internet.ssl import CertificateOptions

N = int("115b8b692e0e045692cf280b436735c77a5a9e8a9e7ed56c965f87db5b2a2ece3", 16)
G = 2
SRP = "core.srp.SRPPackets$"
VK_SALT = bytes.fromhex("125314bb7e97ce55")
CK_SALT = bytes.fromhex("c873418c7ed8ee89")


# -- numbers ---------------------------------------------------------------------------------


def to_tc(i: int) -> bytes:
    """Java BigInteger.toByteArray."""
    length = (i.bit_length() if i >= 0 else (-i - 1).bit_length()) // 8 + 1
    return i.to_bytes(length, "big", signed=True)


def from_tc(b: bytes) -> int:
    return int.from_bytes(b, "big", signed=True)


def hash_int(i: int) -> int:
    return from_tc(hashlib.sha256(to_tc(i)).digest())


def interleave(a: int, b: int) -> int:
    x, y = to_tc(a), to_tc(b)
    out = bytearray()
    p = q = 0
    while p < len(x) and q < len(y):
        first = x[p]
        out.append(first)
        p += 1
        out.append(y[q])
        q += 1
        if first % 2 == 0 and q < len(y):
            out.append(y[q])
            q += 1
    return from_tc(bytes(out) + x[p:] + y[q:])


K_MULT = hash_int(interleave(N, G))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


# -- keys and ciphers ------------------------------------------------------------------------


def password_keys(password: str) -> tuple[bytes, bytes]:
    """(VerificationKey, CryptoKey): PBKDF2-HMAC-SHA256, 131072 iterations, fixed salts."""
    raw = password.encode("utf-8")
    return (
        hashlib.pbkdf2_hmac("sha256", raw, VK_SALT, 131072, 32),
        hashlib.pbkdf2_hmac("sha256", raw, CK_SALT, 131072, 32),
    )


def aes_seal(key: bytes, plain: bytes, iv: bytes | None = None) -> bytes:
    iv = os.urandom(16) if iv is None else iv
    padder = sym_padding.PKCS7(128).padder()
    data = padder.update(plain) + padder.finalize()
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return iv + enc.update(data) + enc.finalize()


def aes_open(key: bytes, blob: bytes) -> bytes:
    dec = Cipher(algorithms.AES(key), modes.CBC(blob[:16])).decryptor()
    data = dec.update(blob[16:]) + dec.finalize()
    unpadder = sym_padding.PKCS7(128).unpadder()
    return unpadder.update(data) + unpadder.finalize()


def rsa_aes_seal(public_key: rsa.RSAPublicKey, plain: bytes) -> bytes:
    key = os.urandom(32)
    wrapped = public_key.encrypt(key, padding.PKCS1v15())
    return b"\x01" + len(wrapped).to_bytes(4, "big") + wrapped + aes_seal(key, plain)


def rsa_aes_open(private_key: rsa.RSAPrivateKey, blob: bytes) -> bytes:
    assert blob[0] == 1
    length = int.from_bytes(blob[1:5], "big")
    wrapped = blob[5 : 5 + length]
    key = private_key.decrypt(wrapped, padding.PKCS1v15())
    return aes_open(key, blob[5 + length :])


def raw_inflate(data: bytes) -> bytes:
    """Inflate the way the original reader does: skip the 2-byte header, ignore the trailer."""
    return zlib.decompressobj(-15).decompress(data[2:])


# -- packets ---------------------------------------------------------------------------------


def packet(class_name: str, value: dict[str, Any]) -> str:
    return class_name + "!" + json.dumps(value, separators=(",", ":"))


def unpacket(text: str) -> tuple[str, Any]:
    name, _, payload = text.partition("!")
    return name, (payload if name == "java.lang.String" else json.loads(payload))


def line_of(text: str) -> bytes:
    return base64.b64encode(text.encode("utf-8"))


def text_of(line: bytes) -> str:
    return base64.b64decode(line, validate=True).decode("utf-8")


def make_verifier(vk: bytes) -> tuple[int, int]:
    salt = from_tc(os.urandom(64)) % (N - 2) + 2
    x = hash_int(interleave(from_tc(vk), salt))
    return salt, pow(G, x, N)


def signup_line(server_key: rsa.RSAPublicKey, user: str, vk: bytes, captcha: str | None = None) -> bytes:
    salt, v = make_verifier(vk)
    extra = "null" if captcha is None else "java.lang.String!" + captcha
    inner = packet(
        SRP + "PacketInit_ClientPreAutheticationInitialization",
        {"version": "2.0", "user": user, "v": b64(to_tc(v)), "s": b64(to_tc(salt)), "extra": b64(extra.encode())},
    )
    blob = rsa_aes_seal(server_key, inner.encode("utf-8"))
    return line_of(packet(SRP + "PacketInit_EncryptedPacket", {"encryptedBlock": b64(blob)}))


def availability_line(server_key: rsa.RSAPublicKey, user: str) -> bytes:
    inner = packet(SRP + "PacketInit_ClientTestCreate", {"version": "2.0", "user": user})
    blob = rsa_aes_seal(server_key, inner.encode("utf-8"))
    return line_of(packet(SRP + "PacketInit_EncryptedPacket", {"encryptedBlock": b64(blob)}))


class LoginFailed(Exception):
    pass


@dataclass
class Srp:
    """The client side of one login, step by step."""

    user: str
    vk: bytes
    a: int = 0

    def __post_init__(self) -> None:
        if not self.a:
            self.a = from_tc(os.urandom(64)) % (N - 2) + 2
        self.A = pow(G, self.a, N)

    def hello(self) -> bytes:
        return line_of(packet(SRP + "Packet1_ClientSendsHello", {"user": self.user, "version": "2.0"}))

    def on_salt(self, line: bytes) -> bytes:
        name, value = unpacket(text_of(line))
        if name != SRP + "Packet2_ServerSendSalt":
            raise LoginFailed(name)
        self.x = hash_int(interleave(from_tc(self.vk), from_tc(unb64(value["salt"]))))
        return line_of(packet(SRP + "Packet3_ClientSendPublicKey", {"publicKey": b64(to_tc(self.A))}))

    def on_b(self, line: bytes) -> bytes:
        name, value = unpacket(text_of(line))
        if name != SRP + "Packet4_ServerSendPublicKey":
            raise LoginFailed(name)
        B = from_tc(unb64(value["publicKey"]))
        u = hash_int(interleave(self.A, B))
        self.S = pow(B - K_MULT * pow(G, self.x, N), self.a + u * self.x, N)
        self.M1 = hash_int(interleave(interleave(self.A, B), self.S))
        return line_of(packet(SRP + "Packet5_ClientSendEvidence", {"evidence": b64(to_tc(self.M1))}))

    def on_m2(self, line: bytes) -> bytes:
        name, value = unpacket(text_of(line))
        expected = hash_int(interleave(interleave(self.A, self.M1), self.S))
        if name != SRP + "Packet6_ServerSendEvidenceAndPayload" or from_tc(unb64(value["evidence"])) != expected:
            raise LoginFailed("bad M2")
        return hashlib.sha256(to_tc(self.S)).digest()


def session_line(key: bytes, text: str) -> bytes:
    return base64.b64encode(aes_seal(key, text.encode("utf-8")))


def session_text(key: bytes, line: bytes) -> str:
    return aes_open(key, base64.b64decode(line, validate=True)).decode("utf-8")


# -- transports ------------------------------------------------------------------------------


class _LineClient(protocol.Protocol):
    def __init__(self) -> None:
        self.lines: defer.DeferredQueue[bytes | None] = defer.DeferredQueue()
        self.buffer = b""
        self.closed = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            self.lines.put(line)

    def connectionLost(self, reason: Any = None) -> None:
        self.lines.put(None)
        self.closed.callback(None)


class TcpLines:
    """Lines over a TCP connection (optionally TLS, certificate not checked: it is a test)."""

    def __init__(self, proto: _LineClient) -> None:
        self.proto = proto

    @classmethod
    async def connect(cls, reactor: Any, port: int, tls: bool) -> TcpLines:
        endpoint: Any = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
        if tls:
            endpoint = wrapClientTLS(CertificateOptions(), endpoint)
        proto = await connectProtocol(endpoint, _LineClient())
        return cls(proto)

    def send_raw(self, data: bytes) -> None:
        self.proto.transport.write(data)

    async def send(self, line: bytes) -> None:
        self.proto.transport.write(line + b"\n")

    async def recv(self) -> bytes | None:
        return await self.proto.lines.get()

    def close(self) -> None:
        self.proto.transport.loseConnection()


class _WsClient(WebSocketClientProtocol):  # type: ignore[misc]
    def onOpen(self) -> None:
        self.factory.opened.callback(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        assert payload.endswith(b"\n") and not isBinary
        self.factory.lines.put(payload[:-1])

    def onClose(self, wasClean: bool, code: Any, reason: Any) -> None:
        self.factory.lines.put(None)
        if not self.factory.opened.called:
            self.factory.opened.errback(ConnectionError(reason))


class WsLines:
    """Lines over a WebSocket, one text frame per line, as the original web client sends them."""

    def __init__(self, proto: _WsClient, lines: defer.DeferredQueue[bytes | None]) -> None:
        self.proto = proto
        self.lines = lines

    @classmethod
    async def connect(cls, reactor: Any, port: int, path: str, headers: dict[str, str] | None = None) -> WsLines:
        factory = WebSocketClientFactory(f"ws://127.0.0.1:{port}{path}", headers=headers)
        factory.protocol = _WsClient
        factory.opened = defer.Deferred()
        factory.lines = defer.DeferredQueue()
        reactor.connectTCP("127.0.0.1", port, factory)
        proto = await factory.opened
        return cls(proto, factory.lines)

    def send_raw(self, data: bytes) -> None:
        self.proto.sendMessage(data, isBinary=False)

    async def send(self, line: bytes) -> None:
        self.proto.sendMessage(line + b"\n", isBinary=False)

    async def recv(self) -> bytes | None:
        return await self.lines.get()

    def close(self) -> None:
        self.proto.sendClose()


async def login(lines: Any, user: str, vk: bytes) -> bytes:
    """Run the six SRP packets; returns K.  LoginFailed if the server closes or cheats."""
    srp = Srp(user, vk)
    await lines.send(srp.hello())
    for step in (srp.on_salt, srp.on_b):
        answer = await lines.recv()
        if answer is None:
            raise LoginFailed("closed")
        await lines.send(step(answer))
    answer = await lines.recv()
    if answer is None:
        raise LoginFailed("closed")
    return srp.on_m2(answer)


async def operation(lines: Any, key: bytes, name: str, value: dict[str, Any]) -> dict[str, Any] | None:
    """Send one encrypted message and return the Response fields (None if the server closed)."""
    await lines.send(session_line(key, packet("core.client.messages." + name if "." not in name else name, value)))
    answer = await lines.recv()
    if answer is None:
        return None
    cls, fields = unpacket(session_text(key, answer))
    assert cls == "core.client.messages.Response"
    return fields


# -- the MV store ----------------------------------------------------------------------------


def mv_headers(
    key_id: str, secret: str, method: str, resource: str, *, body: bytes | None = None, now: float | None = None
) -> dict[str, str]:
    """The headers ConnectorMvStore sends, signed with HMAC-SHA1."""
    date = formatdate(now, usegmt=True)
    content_type = "application/octet-stream" if method == "PUT" else ""
    message = f"{method}\n\n{content_type}\n\n{date}\n{resource}".encode()
    signature = b64(hmac.new(unb64(secret), message, hashlib.sha1).digest())
    headers = {"X-Mv-Date": date, "Authorization": f"MV {key_id}:{signature}"}
    if method == "PUT":
        headers["Content-Type"] = content_type
    return headers


def environment_text(env: dict[str, str]) -> str:
    return "core.util.Environment!" + json.dumps(env, separators=(",", ":"))


def send_body(send_key: rsa.RSAPublicKey, fields: dict[str, str]) -> bytes:
    text = "java.util.HashMap!" + json.dumps(fields, separators=(",", ":"))
    return base64.b64encode(rsa_aes_seal(send_key, text.encode("utf-8")))
