"""JavaMail 1.4 header reading and header-value parsing: InternetHeaders, HeaderTokenizer,
ContentType, activation's MimeType, the mailcap class decision and Content-Transfer-Encoding."""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailiverse.mime.errors import TwinError, parse_error
from mailiverse.mime.limits import Budget

_EOL = re.compile(rb"[\r\n]")


@dataclass(frozen=True)
class Header:
    """One header: ``name`` trimmed, ``line`` the whole (refolded) text, as Latin-1 characters."""

    name: str
    line: str

    @property
    def value(self) -> str:
        """InternetHeader.getValue: after the first ':', leading blanks and folds skipped."""
        colon = self.line.find(":")
        if colon < 0:
            return self.line
        j = colon + 1
        n = len(self.line)
        while j < n and self.line[j] in " \t\r\n":
            j += 1
        return self.line[j:]


def java_trim(text: str) -> str:
    """String.trim(): strip every character up to U+0020 from both ends."""
    start = 0
    end = len(text)
    while start < end and text[start] <= " ":
        start += 1
    while end > start and text[end - 1] <= " ":
        end -= 1
    return text[start:end]


def make_header(line: str) -> Header:
    colon = line.find(":")
    name = java_trim(line if colon < 0 else line[:colon])
    return Header(name, line)


class LineReader:
    """LineInputStream over ``buf[pos:end]``: LF, CRLF, CR CR LF or a lone CR end a line."""

    __slots__ = ("buf", "pos", "end", "pending")

    def __init__(self, buf: bytes, pos: int, end: int) -> None:
        self.buf = buf
        self.pos = pos
        self.end = end
        self.pending: int | None = None

    def _read(self) -> int:
        if self.pos < self.end:
            self.pos += 1
            return self.buf[self.pos - 1]
        return -1

    def _after_cr(self) -> None:
        c2 = self._read()
        if c2 == 0x0D:
            c2 = self._read()
        if c2 != 0x0A:
            # Java pushes the byte back; at end of input (byte)-1 comes back as 0xFF.
            self.pending = c2 & 0xFF

    def read_line(self, budget: Budget | None = None) -> bytes | None:
        prefix = b""
        if self.pending is not None:
            first = self.pending
            self.pending = None
            if first == 0x0A:
                return b""
            if first == 0x0D:
                self._after_cr()
                return b""
            prefix = bytes([first])
        m = _EOL.search(self.buf, self.pos, self.end)
        stop = m.start() if m else self.end
        if budget is not None:
            budget.add_header_line(stop - self.pos + len(prefix))
        line = prefix + self.buf[self.pos : stop]
        if m is None:
            self.pos = self.end
            return line if line else None
        self.pos = stop + 1
        if self.buf[stop] == 0x0D:
            self._after_cr()
        return line


def load_headers(buf: bytes, pos: int, end: int, budget: Budget) -> tuple[list[Header], int, bool]:
    """InternetHeaders.load from ``pos``: (headers, body start, whether a blank line ended them)."""
    reader = LineReader(buf, pos, end)
    headers: list[Header] = []
    prev: str | None = None
    folded: list[str] = []
    saw_blank = False
    while True:
        budget.tick()
        raw = reader.read_line(budget)
        line = None if raw is None else raw.decode("latin-1")
        if line is not None and line[:1] in (" ", "\t"):
            if prev is not None:
                folded.append(prev)
                prev = None
            folded.append("\r\n")
            folded.append(line)
        else:
            if prev is not None:
                if prev:
                    headers.append(make_header(prev))
            elif folded:
                headers.append(make_header("".join(folded)))
                folded = []
            prev = line
            budget.check_header_count(len(headers))
        if line is None:
            break
        if not line:
            saw_blank = True
            break
    # A byte the line reader pushed back is lost with it, as in Java.
    return headers, reader.pos, saw_blank


def header_values(headers: list[Header], name: str) -> list[str]:
    return [h.value for h in headers if equals_ignore_case(h.name, name)]


def first_header(headers: list[Header], name: str) -> str | None:
    for h in headers:
        if equals_ignore_case(h.name, name):
            return h.value
    return None


def equals_ignore_case(a: str, b: str) -> bool:
    if len(a) != len(b):
        return False
    if a == b:
        return True
    for x, y in zip(a, b, strict=True):
        if x != y and x.upper() != y.upper() and x.lower() != y.lower():
            return False
    return True


# --- HeaderTokenizer -------------------------------------------------------------------------

ATOM = -1
QUOTEDSTRING = -2
EOF = -4
MIME_SPECIALS = '()<>@,;:\\"\t []/?='


class Tokenizer:
    """javax.mail.internet.HeaderTokenizer (comments skipped)."""

    def __init__(self, text: str, delimiters: str = MIME_SPECIALS) -> None:
        self.text = text
        self.pos = 0
        self.delimiters = delimiters

    def _skip_white(self) -> bool:
        n = len(self.text)
        while self.pos < n and self.text[self.pos] in " \t\r\n":
            self.pos += 1
        return self.pos < n

    def next(self) -> tuple[int, str | None]:
        text = self.text
        n = len(text)
        if self.pos >= n or not self._skip_white():
            return EOF, None
        c = text[self.pos]
        while c == "(":
            self.pos += 1
            nesting = 1
            while nesting > 0 and self.pos < n:
                c = text[self.pos]
                if c == "\\":
                    self.pos += 1
                elif c == "(":
                    nesting += 1
                elif c == ")":
                    nesting -= 1
                self.pos += 1
            if nesting != 0:
                raise parse_error("Unbalanced comments")
            if not self._skip_white():
                return EOF, None
            c = text[self.pos]
        if c == '"':
            self.pos += 1
            start = self.pos
            filtered = False
            while self.pos < n:
                c = text[self.pos]
                if c == "\\":
                    self.pos += 1
                    filtered = True
                elif c == "\r":
                    filtered = True
                elif c == '"':
                    self.pos += 1
                    raw = text[start : self.pos - 1]
                    return QUOTEDSTRING, _filter_token(raw) if filtered else raw
                self.pos += 1
            raise parse_error("Unbalanced quoted string")
        if c < " " or c >= "\x7f" or c in self.delimiters:
            self.pos += 1
            return ord(c), c
        start = self.pos
        while self.pos < n:
            c = text[self.pos]
            if c < " " or c >= "\x7f" or c in '( "' or c in self.delimiters:
                break
            self.pos += 1
        return ATOM, text[start : self.pos]

    def remainder(self) -> str:
        return self.text[self.pos :]


def _filter_token(raw: str) -> str:
    out: list[str] = []
    escape = False
    got_cr = False
    for c in raw:
        if c == "\n" and got_cr:
            got_cr = False
            continue
        got_cr = False
        if not escape:
            if c == "\\":
                escape = True
            elif c == "\r":
                got_cr = True
            else:
                out.append(c)
        else:
            out.append(c)
            escape = False
    return "".join(out)


def _tok_text(value: str | None) -> str:
    return "null" if value is None else value


def parse_parameters(text: str) -> dict[str, str]:
    """javax.mail.internet.ParameterList (1.4, RFC 2231 decoding off)."""
    params: dict[str, str] = {}
    tok = Tokenizer(text)
    while True:
        kind, value = tok.next()
        if kind == EOF:
            return params
        if kind != ord(";"):
            raise parse_error(f"Expected ';', got \"{_tok_text(value)}\"")
        kind, value = tok.next()
        if kind == EOF:
            return params
        if kind != ATOM:
            raise parse_error(f'Expected parameter name, got "{_tok_text(value)}"')
        name = (value or "").lower()
        kind, value = tok.next()
        if kind != ord("="):
            raise parse_error(f"Expected '=', got \"{_tok_text(value)}\"")
        kind, value = tok.next()
        if kind not in (ATOM, QUOTEDSTRING):
            raise parse_error(f'Expected parameter value, got "{_tok_text(value)}"')
        params[name] = value or ""


def parse_content_type(text: str) -> tuple[str, str, dict[str, str]]:
    """javax.mail.internet.ContentType(String)."""
    tok = Tokenizer(text)
    kind, primary = tok.next()
    if kind != ATOM:
        raise parse_error()
    kind, _ = tok.next()
    if kind != ord("/"):
        raise parse_error()
    kind, sub = tok.next()
    if kind != ATOM:
        raise parse_error()
    params = parse_parameters(tok.remainder())
    return primary or "", sub or "", params


# --- activation's MimeType and the mailcap decision -------------------------------------------

_TSPECIALS = '()<>@,;:/[]?="\\'


def _is_token_char(c: str) -> bool:
    return " " < c < "\x7f" and c not in _TSPECIALS


def _is_token(text: str) -> bool:
    return bool(text) and all(_is_token_char(c) for c in text)


def _java_whitespace(c: str) -> bool:
    return c in " \t\n\x0b\x0c\r\x1c\x1d\x1e\x1f" or (c.isspace() and c not in "\xa0\u2007\u202f\x85")


def _activation_params_ok(text: str) -> bool:
    """javax.activation.MimeTypeParameterList.parse succeeds."""
    n = len(text)
    i = 0

    def skip(k: int) -> int:
        while k < n and _java_whitespace(text[k]):
            k += 1
        return k

    i = skip(i)
    while i < n and text[i] == ";":
        i = skip(i + 1)
        if i >= n:
            return True
        while i < n and _is_token_char(text[i]):
            i += 1
        i = skip(i)
        if i >= n or text[i] != "=":
            return False
        i = skip(i + 1)
        if i >= n:
            return False
        c = text[i]
        if c == '"':
            i += 1
            if i >= n:
                return False
            while i < n:
                c = text[i]
                if c == '"':
                    break
                if c == "\\":
                    i += 1
                i += 1
            if c != '"':
                return False
            i += 1
        elif _is_token_char(c):
            while i < n and _is_token_char(text[i]):
                i += 1
        else:
            return False
        i = skip(i)
    return i >= n


def base_type(content_type: str) -> str:
    """DataHandler.getBaseType: ``primary/sub`` if activation parses it, else the raw text."""
    slash = content_type.find("/")
    semi = content_type.find(";")
    if slash < 0 or (semi >= 0 and semi < slash):
        return content_type
    if semi < 0:
        primary = java_trim(content_type[:slash]).lower()
        sub = java_trim(content_type[slash + 1 :]).lower()
        params_ok = True
    else:
        primary = java_trim(content_type[:slash]).lower()
        sub = java_trim(content_type[slash + 1 : semi]).lower()
        params_ok = _activation_params_ok(content_type[semi:])
    if not params_ok or not _is_token(primary) or not _is_token(sub):
        return content_type
    return f"{primary}/{sub}"


TEXT, MULTIPART, MESSAGE = "text", "multipart", "message"


def handler_for(content_type: str) -> str | None:
    """The JavaMail 1.4 mailcap content handler for a Content-Type, or None (an InputStream)."""
    mime = base_type(content_type).lower()
    if mime in ("text/plain", "text/html", "text/xml"):
        return TEXT
    if mime == "message/rfc822":
        return MESSAGE
    slash = mime.find("/")
    if mime == "multipart/*" or (slash >= 0 and mime[: slash + 1] == "multipart/"):
        return MULTIPART
    return None


def transfer_encoding(headers: list[Header]) -> str | None:
    """MimeBodyPart.getEncoding: the first atom of Content-Transfer-Encoding, else the trimmed value."""
    raw = first_header(headers, "Content-Transfer-Encoding")
    if raw is None:
        return None
    s = java_trim(raw)
    if s.lower() in ("7bit", "8bit", "quoted-printable", "binary", "base64"):
        return s
    tok = Tokenizer(s)
    while True:
        kind, value = tok.next()
        if kind == EOF:
            return s
        if kind == ATOM:
            return value


def content_type_of(headers: list[Header]) -> str:
    value = first_header(headers, "Content-Type")
    return "text/plain" if value is None else value


__all__ = [
    "Header",
    "LineReader",
    "Tokenizer",
    "TwinError",
    "base_type",
    "content_type_of",
    "first_header",
    "handler_for",
    "header_values",
    "java_trim",
    "load_headers",
    "parse_content_type",
    "parse_parameters",
    "transfer_encoding",
]
