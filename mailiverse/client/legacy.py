"""The client side of the legacy upgrade: legacy SRP on the KeyServer, the key-block check, and the upgrade message.

The KeyServer is reached over WebSocket at ``<server>/Mailiverse/KeyServer`` (a small synchronous
RFC 6455 client on the same TLS and pinning rules as :mod:`mailiverse.client.transport`), or over its
TCP port (TLS from the first byte; plain only when asked).  Each connection carries the six SRP
packets and then exactly one encrypted message and its ``Response`` (docs/protocol.md §4.1, docs/formats.md §6):
one connection fetches the key block, which proves the password and yields the RSA keys, and a second
one sends ``mailiverse.legacy.Upgrade!{salt, verifier, group[, block]}`` (docs/legacy.md).

Why one module of this size: the legacy upgrade is one conversation (WebSocket or TCP channel,
six SRP packets, one sealed message) whose parts are used nowhere else.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from mailiverse.auth.srp6a import SRP_GROUP, create_verifier
from mailiverse.auth.usernames import InvalidUsername, canonical_username
from mailiverse.client.errors import (
    AuthenticationFailed,
    ConnectionFailed,
    DecryptionFailed,
    ProtocolError,
    ServerIdentityError,
    UsageError,
)
from mailiverse.client.transport import DEFAULT_TIMEOUT_S, _context, parse_fingerprint
from mailiverse.compat import packets
from mailiverse.compat.blocks import decrypt_key_block, encrypt_key_block
from mailiverse.compat.srp import LegacySrpClient, SessionCipher, SrpError
from mailiverse.compat.typed import encode_typed
from mailiverse.crypto.errors import CryptoError
from mailiverse.crypto.keys import load_private_key, private_key_der, public_key_der
from mailiverse.crypto.pbkdf import crypto_key, verification_key

#: The WebSocket path of the KeyServer on the web service.
KEY_SERVER_PATH = "/Mailiverse/KeyServer"
#: The upgrade message class (our addition to the protocol, docs/legacy.md).
MESSAGE_UPGRADE = "mailiverse.legacy.Upgrade"
#: The longest line accepted from the server (its own limit is 50,000 characters on the KeyServer).
MAX_LINE = packets.KEY_SERVER_MAX_LINE
#: The server proxy's per-message limit on WebSocket (a line plus its ``\n``).
MAX_WS_MESSAGE = 10 * 1024
#: The longest HTTP handshake answer read before giving up.
MAX_HANDSHAKE_BYTES = 16 * 1024
_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#: Key names a key block may hold the private key under: the modern client's, then the original "complete environment".
PRIVATE_KEY_NAMES = ("RSA-PrivateKey", "client/RSA-PrivateKey")
PUBLIC_KEY_NAMES = ("RSA-PublicKey", "client/RSA-PublicKey", "server/RSA-PublicKey")
_WRONG = "wrong user name or password (or the account is not a legacy account)"


class LineChannel(Protocol):
    """One connection that carries whole protocol lines (without their ``\\n``)."""

    def send_line(self, line: bytes) -> None: ...

    def recv_line(self) -> bytes | None:
        """The next line, or None once the server has closed."""
        ...

    def close(self) -> None: ...


def parse_host_port(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) as a pair; UsageError otherwise."""
    host, sep, port_text = text.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port_text.isascii() or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise UsageError("--legacy-keyserver is HOST:PORT")
    return host, int(port_text)


def _connect_socket(
    host: str, port: int, *, tls: bool, ca_file: str | None, fingerprint: str | None, timeout: float
) -> socket.socket:
    """A connected socket, TLS-wrapped and checked against ``--ca``/``--fingerprint`` unless ``tls`` is False."""
    pin = parse_fingerprint(fingerprint) if fingerprint is not None else None
    context = _context(ca_file, pin is not None) if tls else None
    try:
        raw = socket.create_connection((host, port), timeout=timeout)
    except OSError as error:
        raise ConnectionFailed(f"cannot connect to {host}:{port} ({error.strerror or type(error).__name__})") from None
    if context is None:
        return raw
    try:
        wrapped = context.wrap_socket(raw, server_hostname=host)
    except ssl.SSLCertVerificationError as error:
        raw.close()
        raise ServerIdentityError(f"the server certificate is not trusted ({error.verify_message})") from None
    except (OSError, ssl.SSLError) as error:
        raw.close()
        raise ConnectionFailed(f"TLS with {host}:{port} failed ({type(error).__name__})") from None
    if pin is not None:
        der = wrapped.getpeercert(binary_form=True) or b""
        if not hmac.compare_digest(hashlib.sha256(der).digest(), pin):
            wrapped.close()
            raise ServerIdentityError("the server certificate does not match --fingerprint")
    return wrapped


class _Reader:
    """Buffered exact reads from a socket, with every socket error turned into ConnectionFailed."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()
        self.eof = False

    def _fill(self) -> bool:
        if self.eof:
            return False
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            raise ConnectionFailed("the server did not answer in time") from None
        except OSError as error:
            raise ConnectionFailed(f"the connection broke ({type(error).__name__})") from None
        if not chunk:
            self.eof = True
            return False
        self.buffer += chunk
        return True

    def exactly(self, count: int) -> bytes | None:
        """``count`` bytes, or None if the stream ends first."""
        while len(self.buffer) < count:
            if not self._fill():
                return None
        data = bytes(self.buffer[:count])
        del self.buffer[:count]
        return data

    def until(self, marker: bytes, limit: int) -> bytes | None:
        """Bytes up to and including ``marker`` (at most ``limit``), or None at the end of the stream."""
        while True:
            end = self.buffer.find(marker)
            if end >= 0:
                data = bytes(self.buffer[: end + len(marker)])
                del self.buffer[: end + len(marker)]
                return data
            if len(self.buffer) > limit:
                raise ProtocolError("the server sent a line longer than the client accepts")
            if not self._fill():
                return None


def _send_all(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except OSError as error:
        raise ConnectionFailed(f"the connection broke ({type(error).__name__})") from None


class TcpLineChannel:
    """Lines on a TCP connection to the KeyServer port (``\\n``-terminated, as MINA's TextLineCodec)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._reader = _Reader(sock)

    def send_line(self, line: bytes) -> None:
        _send_all(self._sock, line + b"\n")

    def recv_line(self) -> bytes | None:
        while True:
            data = self._reader.until(b"\n", MAX_LINE + 2)
            if data is None:
                return None
            line = data[:-1].removesuffix(b"\r")
            if line:
                return line

    def close(self) -> None:
        self._sock.close()


class WebSocketLineChannel:
    """A minimal RFC 6455 client: one masked text frame per line out, one line per server message in."""

    def __init__(
        self, sock: socket.socket, host: str, port: int, path: str, *, rng: Callable[[int], bytes] = os.urandom
    ) -> None:
        self._sock = sock
        self._reader = _Reader(sock)
        self._rng = rng
        self._closed = False
        self._pending: list[bytes] = []
        self._handshake(host, port, path)

    def _handshake(self, host: str, port: int, path: str) -> None:
        key = base64.b64encode(self._rng(16))
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key.decode('ascii')}\r\n\r\n"
        ).encode("ascii")
        _send_all(self._sock, request)
        answer = self._reader.until(b"\r\n\r\n", MAX_HANDSHAKE_BYTES)
        if answer is None:
            raise ConnectionFailed("the server closed the WebSocket handshake")
        lines = answer.decode("latin-1").split("\r\n")
        status = lines[0].split(" ", 2)
        if len(status) < 2 or status[1] != "101":
            code = status[1] if len(status) > 1 else "?"
            if code == "404":
                raise ProtocolError("the server does not offer the legacy protocol (is --legacy on?)")
            raise ProtocolError(f"the server refused the WebSocket handshake (HTTP {code[:3]})")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        expected = base64.b64encode(hashlib.sha1(key + _WS_GUID).digest())  # noqa: S324 - RFC 6455 demands SHA-1
        accept = headers.get("sec-websocket-accept", "").encode("latin-1")
        if headers.get("upgrade", "").lower() != "websocket" or not hmac.compare_digest(accept, expected):
            raise ProtocolError("the server's WebSocket handshake is malformed")

    def _frame(self, opcode: int, payload: bytes) -> bytes:
        size = len(payload)
        if size < 126:
            head = bytes([0x80 | opcode, 0x80 | size])
        elif size < 65536:
            head = bytes([0x80 | opcode, 0x80 | 126]) + size.to_bytes(2, "big")
        else:
            head = bytes([0x80 | opcode, 0x80 | 127]) + size.to_bytes(8, "big")
        mask = self._rng(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        return head + mask + masked

    def send_line(self, line: bytes) -> None:
        payload = line + b"\n"
        if len(payload) > MAX_WS_MESSAGE:
            raise ProtocolError(f"a message is longer than the WebSocket limit of {MAX_WS_MESSAGE} bytes")
        _send_all(self._sock, self._frame(0x1, payload))

    def _read_frame(self) -> tuple[bool, int, bytes] | None:
        head = self._reader.exactly(2)
        if head is None:
            return None
        fin, opcode, masked, size = bool(head[0] & 0x80), head[0] & 0x0F, bool(head[1] & 0x80), head[1] & 0x7F
        if head[0] & 0x70 or masked:
            raise ProtocolError("the server sent a malformed WebSocket frame")
        if size >= 126:
            extended = self._reader.exactly(2 if size == 126 else 8)
            if extended is None:
                return None
            size = int.from_bytes(extended, "big")
        if size > MAX_LINE + 2:
            raise ProtocolError("the server sent a WebSocket message larger than the client accepts")
        payload = self._reader.exactly(size)
        if payload is None:
            return None
        return fin, opcode, payload

    def _message(self) -> bytes | None:
        parts: list[bytes] = []
        total = 0
        while True:
            frame = self._read_frame()
            if frame is None:
                return None
            fin, opcode, payload = frame
            if opcode == 0x8:
                if not self._closed:
                    self._closed = True
                    try:
                        self._sock.sendall(self._frame(0x8, payload[:2]))
                    except OSError:
                        pass
                return None
            if opcode == 0x9:
                _send_all(self._sock, self._frame(0xA, payload))
                continue
            if opcode == 0xA:
                continue
            # Text starts a message, continuation carries it on; anything else (binary) is not this protocol.
            if opcode not in (0x0, 0x1) or (opcode == 0x1) == bool(parts):
                raise ProtocolError("the server sent an unexpected WebSocket frame")
            parts.append(payload)
            total += len(payload)
            if total > MAX_LINE + 2:
                raise ProtocolError("the server sent a WebSocket message larger than the client accepts")
            if fin:
                return b"".join(parts)

    def recv_line(self) -> bytes | None:
        while not self._pending:
            message = self._message()
            if message is None:
                return None
            self._pending = [line.removesuffix(b"\r") for line in message.split(b"\n") if line.strip(b"\r")]
        return self._pending.pop(0)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                self._sock.sendall(self._frame(0x8, (1000).to_bytes(2, "big")))
            except OSError:
                pass
        self._sock.close()


@dataclass(frozen=True)
class KeyServerAddress:
    """Where the KeyServer is: the web service's WebSocket route, or a TCP port (TLS unless ``plain``)."""

    server: str
    ca_file: str | None = None
    fingerprint: str | None = None
    tcp: tuple[str, int] | None = None
    plain: bool = False
    timeout: float = DEFAULT_TIMEOUT_S

    def __post_init__(self) -> None:
        if self.ca_file is not None and self.fingerprint is not None:
            raise UsageError("give --ca or --fingerprint, not both")
        if self.plain and self.tcp is None:
            raise UsageError("--legacy-plain needs --legacy-keyserver HOST:PORT")
        if self.fingerprint is not None:
            parse_fingerprint(self.fingerprint)
        parts = urlsplit(self.server)
        if parts.scheme != "https" or not parts.hostname:
            raise UsageError("--server must be an https:// URL")

    def connect(self) -> LineChannel:
        """Open one KeyServer connection."""
        if self.tcp is not None:
            host, port = self.tcp
            sock = _connect_socket(
                host, port, tls=not self.plain, ca_file=self.ca_file, fingerprint=self.fingerprint, timeout=self.timeout
            )
            return TcpLineChannel(sock)
        parts = urlsplit(self.server)
        web_host = parts.hostname or ""
        try:
            web_port = parts.port or 443
        except ValueError:
            raise UsageError("--server has a bad port") from None
        sock = _connect_socket(
            web_host, web_port, tls=True, ca_file=self.ca_file, fingerprint=self.fingerprint, timeout=self.timeout
        )
        try:
            return WebSocketLineChannel(sock, web_host, web_port, KEY_SERVER_PATH)
        except BaseException:
            sock.close()
            raise


def legacy_login(channel: LineChannel, user: str, key: bytes) -> SessionCipher:
    """Run the six SRP packets on ``channel`` and return the session stream's cipher.

    A server that closes instead of answering (what it does on a wrong password, an unknown or
    upgraded name, or a rate limit) is :class:`AuthenticationFailed`; a forged M2 is
    :class:`ServerIdentityError`.
    """
    srp = LegacySrpClient(user, key)
    steps = (
        (packets.PACKET2_SERVER_SALT, srp.receive_salt, packets.PACKET3_CLIENT_PUBLIC_KEY),
        (packets.PACKET4_SERVER_PUBLIC_KEY, srp.receive_server_public_key, packets.PACKET5_CLIENT_EVIDENCE),
    )
    channel.send_line(packets.encode_line(packets.PACKET1_CLIENT_HELLO, srp.hello()).rstrip(b"\n"))
    try:
        for expected, step, reply in steps:
            fields = _expect(channel, expected)
            channel.send_line(packets.encode_line(reply, step(fields)).rstrip(b"\n"))
        session_key = srp.receive_server_evidence(_expect(channel, packets.PACKET6_SERVER_EVIDENCE))
    except SrpError:
        raise ServerIdentityError("the KeyServer's SRP answer is invalid") from None
    return SessionCipher(session_key, max_line=MAX_LINE)


def _expect(channel: LineChannel, class_name: str) -> dict[str, Any]:
    line = channel.recv_line()
    if line is None:
        raise AuthenticationFailed(_WRONG)
    try:
        return packets.decode_line(line, MAX_LINE, class_name)[1]
    except packets.PacketError:
        raise ProtocolError("the KeyServer sent a malformed packet") from None


def exchange(channel: LineChannel, cipher: SessionCipher, class_name: str, fields: dict[str, Any]) -> dict[str, Any]:
    """Send one encrypted message after login and return the fields of the server's ``Response``."""
    if class_name in packets.PACKET_FIELDS:
        text = packets.encode_packet(class_name, fields)
    else:
        text = encode_typed(class_name, fields)
    channel.send_line(cipher.encrypt_line(text).encode("ascii"))
    line = channel.recv_line()
    if line is None:
        raise ProtocolError("the KeyServer closed without answering")
    try:
        answer = cipher.decrypt_line(line.decode("ascii"))
        return packets.decode_packet(answer, packets.MESSAGE_RESPONSE)[1]
    except (SrpError, packets.PacketError, UnicodeDecodeError):
        raise ProtocolError("the KeyServer's answer is malformed") from None


def _session(
    address: KeyServerAddress, user: str, key: bytes, class_name: str, fields: dict[str, Any]
) -> dict[str, Any]:
    channel = address.connect()
    try:
        cipher = legacy_login(channel, user, key)
        return exchange(channel, cipher, class_name, fields)
    finally:
        channel.close()


def fetch_key_block(address: KeyServerAddress, user: str, key: bytes) -> bytes:
    """The account's key block as stored on the KeyServer (legacy login with VerificationKey ``key``)."""
    answer = _session(address, user, key, packets.MESSAGE_GET, {})
    try:
        return packets.strict_b64decode(answer.get("block", ""))
    except packets.PacketError:
        raise ProtocolError("the KeyServer's key block is not base64") from None


@dataclass(frozen=True)
class UpgradeResult:
    """What an upgrade did: the modern account name, the key's fingerprint, and whether the key block was rewritten."""

    account: str
    public_key_sha256: str
    rewrote_key_block: bool


def _first(environment: dict[str, str], names: tuple[str, ...]) -> str | None:
    return next((environment[n] for n in names if n in environment), None)


def modern_key_block(crypto: bytes, block: bytes) -> tuple[bytes | None, bytes]:
    """Check a legacy key block and return (the block to send or None if it can stay, the public key DER).

    The block is decrypted with the CryptoKey (a wrong password is :class:`DecryptionFailed`).  The
    modern client reads ``RSA-PrivateKey``; an original "complete environment" keeps it under
    ``client/RSA-PrivateKey``, so then the same environment is re-sealed with the top-level names
    added (every original entry kept).
    """
    try:
        environment = decrypt_key_block(crypto, block)
        private_text = _first(environment, PRIVATE_KEY_NAMES)
        if private_text is None:
            raise DecryptionFailed("the key block holds no RSA private key")
        private = load_private_key(base64.b64decode(private_text, validate=True))
    except (CryptoError, ValueError):
        raise DecryptionFailed("could not decrypt the key block with this password") from None
    public = public_key_der(private)
    stated = _first(environment, PUBLIC_KEY_NAMES)
    if stated is not None and not hmac.compare_digest(stated.encode("ascii", "replace"), base64.b64encode(public)):
        raise DecryptionFailed("the key block's public key does not belong to its private key")
    if "RSA-PrivateKey" in environment and "RSA-PublicKey" in environment:
        return None, public
    updated = dict(environment)
    updated["RSA-PrivateKey"] = base64.b64encode(private_key_der(private)).decode("ascii")
    updated["RSA-PublicKey"] = base64.b64encode(public).decode("ascii")
    return encrypt_key_block(crypto, updated), public


def account_name(user: str) -> str:
    """The appliance account of a legacy user name: the local part of ``name@domain`` (or ``name``), canonical."""
    local = user.strip().rpartition("@")[0] if "@" in user else user.strip()
    try:
        return canonical_username(local)
    except InvalidUsername as error:
        raise UsageError(f"bad user name: {error.message}") from None


def upgrade_legacy(address: KeyServerAddress, user: str, password: str) -> UpgradeResult:
    """Move a legacy account to the modern SRP login, keeping its RSA keys (docs/legacy.md, "Upgrade path").

    1. legacy login with the VerificationKey and ``Get`` of the key block, decrypted with the CryptoKey:
       this proves the password and finds the private key;
    2. a second legacy login that sends the modern salt and verifier of the same VerificationKey
       (``create_verifier``), with the key block re-sealed if the modern client could not read it.
    """
    if not password:
        raise UsageError("the password is empty")
    name = account_name(user)
    legacy_user = user.strip()
    if len(legacy_user) > packets.MAX_USER_CHARS:
        raise UsageError(f"the user name is longer than {packets.MAX_USER_CHARS} characters")
    try:
        verification, crypto = verification_key(password), crypto_key(password)
    except ValueError:
        raise UsageError("the password is too long or not valid text") from None
    block = fetch_key_block(address, legacy_user, verification)
    if not block:
        raise DecryptionFailed("the account has no key block to keep")
    new_block, public = modern_key_block(crypto, block)
    salt, verifier = create_verifier(name, verification)
    fields: dict[str, Any] = {
        "salt": base64.b64encode(salt).decode("ascii"),
        "verifier": base64.b64encode(verifier).decode("ascii"),
        "group": SRP_GROUP,
    }
    if new_block is not None:
        fields["block"] = base64.b64encode(new_block).decode("ascii")
    answer = _session(address, legacy_user, verification, MESSAGE_UPGRADE, fields)
    if answer:
        raise ProtocolError("the KeyServer's answer to the upgrade is unexpected")
    return UpgradeResult(name, hashlib.sha256(public).hexdigest(), new_block is not None)
