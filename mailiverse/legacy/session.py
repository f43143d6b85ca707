"""One KeyServer or MailServer connection as a state machine over lines, independent of the transport.

A session takes wire lines (base64, no terminator) and answers with wire lines and whether
to close: the sign-up packet (MailServer only) or the six SRP packets, then one encrypted
Get/Put/Delete (or the upgrade message) and its Response.  Any error closes the connection
without an error packet, as the original does, and counts as a failed login once a hello
named an account.  :class:`LineDriver` feeds lines to a session one at a time for a transport.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from twisted.internet.defer import Deferred

from mailiverse.compat import packets
from mailiverse.compat.packets import (
    MESSAGE_DELETE,
    MESSAGE_GET,
    MESSAGE_PUT,
    MESSAGE_RESPONSE,
    PACKET1_CLIENT_HELLO,
    PACKET2_SERVER_SALT,
    PACKET3_CLIENT_PUBLIC_KEY,
    PACKET4_SERVER_PUBLIC_KEY,
    PACKET5_CLIENT_EVIDENCE,
    PACKET6_SERVER_EVIDENCE,
    PACKET_INIT_ENCRYPTED,
)
from mailiverse.compat.srp import LegacySrpServer, SessionCipher, sint
from mailiverse.compat.typed import decode_typed
from mailiverse.legacy.backend import LegacyBackend, LegacyRefused, strict_b64
from mailiverse.logs import Logger
from mailiverse.store.legacy import LegacyLogin

log = Logger()

Role = Literal["key", "mail"]
#: The upgrade message: our addition, sent instead of Get/Put on the KeyServer after legacy SRP.
MESSAGE_UPGRADE = "mailiverse.legacy.Upgrade"
MAX_LINE = {"key": packets.KEY_SERVER_MAX_LINE, "mail": packets.MAIL_SERVER_MAX_LINE}
#: Version reported in packet 2 (``ConstantsVersion.LOGIN``; we keep no other).
STORED_VERSION = "2.0"


@dataclass
class Reply:
    """Lines to send (each ending in ``\\n``) and whether to close afterwards."""

    lines: list[bytes]
    close: bool


class Rejected(Exception):
    """The connection must close; nothing is said to the peer."""


class LineSession:
    """The server side of one connection.  ``b`` and ``ivs`` fix randomness for transcript tests."""

    def __init__(
        self,
        role: Role,
        backend: LegacyBackend,
        peer: str,
        *,
        b: int | None = None,
        ivs: Iterable[bytes] | None = None,
    ) -> None:
        self.role = role
        self.backend = backend
        self.peer = peer
        self.max_line = MAX_LINE[role]
        self._b = b
        self._ivs = ivs
        self._state = "hello"
        self._srp: LegacySrpServer | None = None
        self._login: LegacyLogin | None = None
        self._throttle_key: str | None = None
        self._cipher: SessionCipher | None = None

    @property
    def finished(self) -> bool:
        return self._state == "closed"

    async def receive(self, line: bytes) -> Reply:
        """Handle one line; never raises."""
        if self._state == "closed":
            return Reply([], True)
        try:
            return await self._receive(line)
        except Exception as error:  # noqa: BLE001 - every failure closes the same way
            if self._throttle_key is not None and self._state != "done":
                try:
                    await self.backend.login_throttle.failed(self._throttle_key, self.peer)
                except Exception as counting:  # noqa: BLE001 - the shared count is down; still close the same way
                    log.warn("legacy login failure not counted: {why}", why=type(counting).__name__)
            log.info(
                "legacy {role} connection from {peer} closed: {why}",
                role=self.role,
                peer=self.peer,
                why=type(error).__name__,
            )
            self._state = "closed"
            return Reply([], True)

    async def _receive(self, line: bytes) -> Reply:
        if self._state == "hello":
            return await self._hello(line)
        if self._state == "A":
            return self._public_key(line)
        if self._state == "M1":
            return self._evidence(line)
        if self._state == "op":
            return await self._operation(line)
        raise Rejected("unexpected line")

    async def _hello(self, line: bytes) -> Reply:
        expected = (PACKET1_CLIENT_HELLO, PACKET_INIT_ENCRYPTED) if self.role == "mail" else (PACKET1_CLIENT_HELLO,)
        text = packets.parse_line(line, self.max_line)
        class_name, fields = packets.decode_packet(text, *expected)
        if class_name == PACKET_INIT_ENCRYPTED:
            self._state = "closed"
            verdict = await self.backend.handle_init(text, self.peer)
            return Reply([packets.frame_line(verdict)], True)
        user: str = fields["user"]
        name = self.backend.local_name(user)
        key = self.backend.throttle_key(name, user)
        if not (await self.backend.login_throttle.admit(key, self.peer)).allowed:
            raise Rejected("rate limited")
        self._throttle_key = key
        login = await self.backend.login_data(name) if name is not None else None
        if login is None:
            salt, verifier = self.backend.decoy(name or user)
        else:
            salt, verifier = sint(login.salt), sint(login.verifier)
        self._login = login
        self._srp = LegacySrpServer(user, salt, verifier, b=self._b, version=STORED_VERSION)
        answer = self._srp.receive_hello(fields)
        self._state = "A"
        return Reply([packets.encode_line(PACKET2_SERVER_SALT, answer)], False)

    def _public_key(self, line: bytes) -> Reply:
        assert self._srp is not None
        fields = packets.decode_line(line, self.max_line, PACKET3_CLIENT_PUBLIC_KEY)[1]
        answer = self._srp.receive_client_public_key(fields)
        self._state = "M1"
        return Reply([packets.encode_line(PACKET4_SERVER_PUBLIC_KEY, answer)], False)

    def _evidence(self, line: bytes) -> Reply:
        assert self._srp is not None
        fields = packets.decode_line(line, self.max_line, PACKET5_CLIENT_EVIDENCE)[1]
        answer = self._srp.receive_client_evidence(fields)
        if self._login is None:
            # A decoy can only fail (its verifier has no password); belt and braces.
            raise Rejected("no such account")
        assert self._srp.K is not None
        self._cipher = SessionCipher(self._srp.K, self._ivs, max_line=self.max_line)
        self._state = "op"
        return Reply([packets.encode_line(PACKET6_SERVER_EVIDENCE, answer)], False)

    async def _operation(self, line: bytes) -> Reply:
        assert self._cipher is not None and self._login is not None
        text = self._cipher.decrypt_line(line.decode("ascii"))
        self._state = "done"
        class_name, value = decode_typed(text)
        if class_name == MESSAGE_UPGRADE and self.role == "key":
            await self._upgrade(value)
            return self._respond({})
        _, fields = packets.decode_packet(text, MESSAGE_GET, MESSAGE_PUT, MESSAGE_DELETE)
        login = self._login
        if self.role == "key":
            if class_name == MESSAGE_GET:
                block = await self.backend.get_key_block(login)
                return self._respond({"block": packets.b64encode(block or b"")})
            if class_name == MESSAGE_PUT:
                block = strict_b64(fields["block"], self.max_line)
                await self.backend.put_key_block(login, block)
                return self._respond({"block": fields["block"]})
            raise Rejected("the key server deletes nothing")
        if class_name == MESSAGE_GET:
            from mailiverse.compat.blocks import environment_bytes

            environment = await self.backend.get_server_environment(login)
            if environment is None:
                return self._respond({"block": ""})
            return self._respond({"block": packets.b64encode(environment_bytes(environment))})
        if class_name == MESSAGE_PUT:
            block = strict_b64(fields["block"], self.max_line)
            await self.backend.put_server_environment(login, block)
            return self._respond({"block": fields["block"]})
        await self.backend.delete_account(login)
        return self._respond({})

    async def _upgrade(self, value: Any) -> None:
        if not isinstance(value, dict):
            raise LegacyRefused("malformed upgrade")
        salt = strict_b64(value.get("salt"), 200)
        verifier = strict_b64(value.get("verifier"), 1000)
        group = value.get("group")
        block_text = value.get("block")
        block = None if block_text is None else strict_b64(block_text, self.max_line)
        if not isinstance(group, str):
            raise LegacyRefused("malformed upgrade")
        assert self._login is not None
        await self.backend.upgrade(self._login, salt=salt, verifier=verifier, group=group, key_block=block)

    def _respond(self, fields: dict[str, Any]) -> Reply:
        assert self._cipher is not None
        text = packets.encode_packet(MESSAGE_RESPONSE, fields)
        self._state = "closed"
        return Reply([self._cipher.encrypt_line(text).encode("ascii") + b"\n"], True)


class LineDriver:
    """Feeds a transport's lines to a session one at a time, writing replies and closing when told."""

    #: Lines a client may send ahead of the answers before we give up on it.
    MAX_QUEUED = 4

    def __init__(self, session: LineSession, write: Callable[[bytes], None], close: Callable[[], None]) -> None:
        self.session = session
        self._write = write
        self._close = close
        self._queue: deque[bytes] = deque()
        self._running = False
        self._closed = False

    def line(self, line: bytes) -> None:
        if self._closed:
            return
        if len(self._queue) >= self.MAX_QUEUED:
            self.close()
            return
        self._queue.append(line)
        if not self._running:
            self._running = True
            Deferred.fromCoroutine(self._run()).addErrback(self._crashed)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._queue.clear()
            self._close()

    def _crashed(self, failure: Any) -> None:
        log.failure("legacy line driver failed", failure)
        self.close()

    async def _run(self) -> None:
        try:
            while self._queue and not self._closed:
                reply = await self.session.receive(self._queue.popleft())
                if self._closed:
                    return
                for out in reply.lines:
                    self._write(out)
                if reply.close:
                    self.close()
                    return
        finally:
            self._running = False
