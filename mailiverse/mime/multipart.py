"""MimeMultipart.parse of JavaMail 1.4: splitting a multipart body into its parts' byte ranges."""

from __future__ import annotations

from dataclasses import dataclass

from mailiverse.mime.errors import TwinError, messaging
from mailiverse.mime.headers import LineReader
from mailiverse.mime.limits import Budget


@dataclass(frozen=True)
class Span:
    """A part's raw bytes without copying: ``buf[start:end]``."""

    buf: bytes
    start: int
    end: int

    def bytes(self) -> bytes:
        if self.start == 0 and self.end == len(self.buf):
            return self.buf
        return self.buf[self.start : self.end]


def split(
    body: Span, boundary_param: str | None, shared: bool, read_error: TwinError | None, budget: Budget
) -> list[Span]:
    """The parts of a multipart body; ``shared`` is JavaMail's SharedInputStream path.

    ``read_error`` is the IOException the transfer decoder raises when reading reaches
    the end of the body.
    """
    buf, pos, end = body.buf, body.start, body.end

    def eof_error() -> TwinError:
        assert read_error is not None
        return messaging("IO Error", read_error)

    boundary = None if boundary_param is None else "--" + boundary_param
    reader = LineReader(buf, pos, end)
    while True:
        budget.tick()
        raw = reader.read_line()
        if raw is None:
            if read_error is not None:
                raise eof_error()
            raise messaging("Missing start boundary")
        line = raw.decode("latin-1").rstrip(" \t")
        if boundary is not None:
            if line == boundary:
                break
        elif line.startswith("--"):
            boundary = line
            break
    bnd = bytes(ord(c) & 0xFF for c in boundary)
    pos = reader.pos
    parts: list[Span] = []
    while True:
        budget.tick()
        part_start = pos
        if shared:
            headers_end = _skip_headers(buf, pos, end)
            if headers_end is None:
                break
            scan_from = headers_end
        else:
            skipped = _skip_headers(buf, pos, end)
            scan_from = end if skipped is None else skipped
        found = _find_boundary(buf, scan_from, end, bnd, budget)
        budget.add_part()
        if found is None:
            if read_error is not None:
                raise eof_error()
            parts.append(Span(buf, part_start, end))
            break
        match, content_end, next_pos, closing = found
        parts.append(Span(buf, part_start, content_end))
        if closing:
            break
        pos = next_pos
    return parts


def _skip_headers(buf: bytes, pos: int, end: int) -> int | None:
    """Position after the blank line ending a part's headers, or None at end of input."""
    reader = LineReader(buf, pos, end)
    while True:
        line = reader.read_line()
        if line is None:
            return None
        if not line:
            return reader.pos


def _find_boundary(buf: bytes, start: int, end: int, bnd: bytes, budget: Budget) -> tuple[int, int, int, bool] | None:
    """(match, content end, next part start, closing) for the first real delimiter after ``start``."""
    bl = len(bnd)
    at = start
    while True:
        budget.tick()
        p = buf.find(bnd, at, end)
        if p < 0:
            return None
        at = p + 1
        eol = 0
        if p > start:
            before = buf[p - 1]
            if before not in (0x0D, 0x0A):
                continue
            eol = 1
            if before == 0x0A and p - 2 >= start and buf[p - 2] == 0x0D:
                eol = 2
        q = p + bl
        if buf[q : q + 2] == b"--" and q + 2 <= end:
            return p, p - eol, q + 2, True
        while q < end and buf[q] in (0x20, 0x09):
            q += 1
        if q < end and buf[q] == 0x0A:
            return p, p - eol, q + 1, False
        if q < end and buf[q] == 0x0D:
            q += 1
            if q < end and buf[q] == 0x0A:
                q += 1
            return p, p - eol, q, False
