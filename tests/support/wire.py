"""One HTTP connection to a ``Site`` over a ``StringTransport``, fed the way TCP would feed it.

``Wire.stream`` sends a body in pieces and never while the Site has paused the transport (as a
kernel would stop delivering), so a test sees exactly how many bytes the Site took before it answered.
The channel's timers run on ``Wire.clock``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import StringTransport

PIECE = 4 * 1024


class Wire:
    """One connection to ``site``: bytes in as a client sends them, the response as written."""

    def __init__(self, site: Any) -> None:
        self.channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5555))
        #: The channel's timers (the abort of a refused connection), advanced by the test.
        self.clock = Clock()
        self.channel.callLater = self.clock.callLater
        self.transport = StringTransport()
        self.channel.makeConnection(self.transport)
        self.fed = 0

    @property
    def paused(self) -> bool:
        return bool(self.transport.producerState == "paused")

    @property
    def answered(self) -> bool:
        return b"\r\n\r\n" in self.transport.value()

    @property
    def complete(self) -> bool:
        """Whether a whole response (Content-Length or chunked) has been written."""
        if not self.answered:
            return False
        head, _, body = self.transport.value().partition(b"\r\n\r\n")
        for line in head.lower().split(b"\r\n"):
            if line.startswith(b"content-length:"):
                return len(body) >= int(line.split(b":", 1)[1])
        return body.endswith(b"0\r\n\r\n") or self.transport.disconnecting

    def send(self, data: bytes) -> None:
        self.fed += len(data)
        self.channel.dataReceived(data)

    async def until(self, condition: Callable[[], bool]) -> None:
        """Let the reactor run (database threads answer) until ``condition`` holds."""
        for _ in range(20_000):
            if condition():
                return
            await deferLater(reactor, 0.001, lambda: None)
        raise AssertionError(f"the Site never got there ({self.fed} bytes sent)")

    async def stream(self, body: bytes, *, stop_before: int = 0, piece: int = PIECE) -> None:
        """Send ``body`` in pieces, never while the transport is paused, until answered or done."""
        end = len(body) - stop_before
        at = 0
        while at < end and not self.answered:
            await self.until(lambda: not self.paused or self.answered)
            if self.answered:
                return
            self.send(body[at : min(at + piece, end)])
            at += piece

    def response(self) -> tuple[int, dict[str, str], bytes]:
        """Status, headers (lower-case names) and raw body of the response written so far."""
        assert self.answered, f"no answer after {self.fed} bytes"
        head, _, body = self.transport.value().partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding") == "chunked":
            body = _dechunk(body)
        return int(lines[0].split(" ")[1]), headers, body


def _dechunk(data: bytes) -> bytes:
    pieces = []
    while data:
        size_line, _, data = data.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            break
        pieces.append(data[:size])
        data = data[size + 2 :]
    return b"".join(pieces)


def request_head(method: str, path: str, headers: dict[str, str], length: int | None) -> bytes:
    """The request line and headers, with Content-Length ``length`` or, for None, chunked encoding."""
    lines = [f"{method} {path} HTTP/1.1", "Host: mail.example.org", *(f"{k}: {v}" for k, v in headers.items())]
    lines.append(f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def chunked(body: bytes, size: int = 1000) -> bytes:
    """``body`` in chunked transfer encoding, without the final empty chunk."""
    return b"".join(b"%x\r\n%s\r\n" % (len(body[i : i + size]), body[i : i + size]) for i in range(0, len(body), size))


__all__ = ["PIECE", "Wire", "chunked", "request_head"]
