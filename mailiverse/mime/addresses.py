"""InternetAddress.parseHeader of JavaMail 1.4 (strict header parsing), groups included."""

from __future__ import annotations

from dataclasses import dataclass

from mailiverse.mime.headers import java_trim
from mailiverse.mime.rfc2047 import decode_text


class AddressError(Exception):
    """AddressException: the header does not parse, so the bucket is left out."""


@dataclass(frozen=True)
class Address:
    address: str
    encoded_personal: str | None

    @property
    def personal(self) -> str | None:
        """getPersonal(): RFC 2047-decoded; any failure keeps the encoded text."""
        if self.encoded_personal is None:
            return None
        try:
            return decode_text(self.encoded_personal)
        except Exception:  # noqa: BLE001 - JavaMail swallows every decoding failure here
            return self.encoded_personal


_SPECIALS_NOLOCAL = '()<>,;:\\"[]@'
_SPECIALS_NODOT = '()<>,;:\\"[]@'


def _unquote(text: str) -> str:
    if len(text) >= 2 and text.startswith('"') and text.endswith('"'):
        text = text[1:-1]
        if "\\" in text:
            out: list[str] = []
            i = 0
            while i < len(text):
                c = text[i]
                if c == "\\" and i < len(text) - 1:
                    i += 1
                    c = text[i]
                out.append(c)
                i += 1
            text = "".join(out)
    return text


def _check_address(addr: str, route_addr: bool) -> None:
    if '"' in addr:
        return
    start = 0
    if route_addr:
        i = _index_of_any(addr, ",:", start)
        while i >= 0:
            if addr[start : start + 1] != "@":
                raise AddressError("Illegal route-addr")
            if addr[i] == ":":
                start = i + 1
                break
            start = i + 1
            i = _index_of_any(addr, ",:", start)
    at = addr.find("@", start)
    if at >= 0:
        if at == start:
            raise AddressError("Missing local name")
        if at == len(addr) - 1:
            raise AddressError("Missing domain")
        local = addr[start:at]
        domain: str | None = addr[at + 1 :]
    else:
        local = addr
        domain = None
    if _index_of_any(addr, " \t\n\r", 0) >= 0:
        raise AddressError("Illegal whitespace in address")
    if _index_of_any(local, _SPECIALS_NOLOCAL, 0) >= 0:
        raise AddressError("Illegal character in local name")
    if domain is not None and "[" not in domain and _index_of_any(domain, _SPECIALS_NODOT, 0) >= 0:
        raise AddressError("Illegal character in domain")


def _index_of_any(text: str, chars: str, start: int) -> int:
    for i in range(start, len(text)):
        if text[i] in chars:
            return i
    return -1


def parse_header(text: str) -> list[Address]:
    """Parse an address list header value the way ``InternetAddress.parseHeader(s, true)`` does."""
    result: list[Address] = []
    start = end = -1
    start_personal = end_personal = -1
    in_group = False
    route_addr = False
    n = len(text)
    index = 0

    def finish(stop: int) -> None:
        nonlocal start_personal, end_personal
        addr = java_trim(text[start:stop])
        _check_address(addr, route_addr)
        personal = None
        if start_personal >= 0:
            personal = _unquote(java_trim(text[start_personal:end_personal]))
            start_personal = end_personal = -1
        result.append(Address(addr, personal))

    while index < n:
        c = text[index]
        if c == "(":
            if start >= 0 and end == -1:
                end = index
            if start_personal == -1:
                start_personal = index + 1
            index += 1
            nesting = 1
            while index < n and nesting > 0:
                c = text[index]
                if c == "\\":
                    index += 1
                elif c == "(":
                    nesting += 1
                elif c == ")":
                    nesting -= 1
                index += 1
            if nesting > 0:
                raise AddressError("Missing ')'")
            index -= 1
            if end_personal == -1:
                end_personal = index
        elif c == ")":
            raise AddressError("Missing '('")
        elif c == "<":
            if route_addr:
                raise AddressError("Extra route-addr")
            if not in_group:
                start_personal = start
                if start_personal >= 0:
                    end_personal = index
                start = index + 1
            in_quote = False
            index += 1
            while index < n:
                c = text[index]
                if c == "\\":
                    index += 1
                elif c == '"':
                    in_quote = not in_quote
                elif c == ">" and not in_quote:
                    break
                index += 1
            if index >= n:
                raise AddressError("Missing '\"'" if in_quote else "Missing '>'")
            route_addr = True
            end = index
        elif c == ">":
            raise AddressError("Missing '<'")
        elif c == '"':
            if start == -1:
                start = index
            index += 1
            while index < n:
                c = text[index]
                if c == "\\":
                    index += 1
                elif c == '"':
                    break
                index += 1
            if index >= n:
                raise AddressError("Missing '\"'")
        elif c == "[":
            index += 1
            while index < n:
                c = text[index]
                if c == "\\":
                    index += 1
                elif c == "]":
                    break
                index += 1
            if index >= n:
                raise AddressError("Missing ']'")
        elif c == ",":
            if start == -1:
                route_addr = False
                start = end = -1
            elif in_group:
                route_addr = False
            else:
                finish(index if end == -1 else end)
                route_addr = False
                start = end = -1
        elif c == ":":
            if in_group:
                raise AddressError("Nested group")
            in_group = True
            if start == -1:
                start = index
        elif c == ";":
            if start == -1:
                start = index
            if not in_group:
                raise AddressError("Illegal semicolon, not in group")
            in_group = False
            end = index + 1
            result.append(Address(java_trim(text[start:end]), None))
            route_addr = False
            start = end = -1
        elif c in " \t\r\n":
            pass
        elif start == -1:
            start = index
        index += 1
    if start >= 0:
        finish(n if end == -1 else end)
    return result


def bucket(addresses: list[Address]) -> list[dict[str, str]]:
    """The JSON entries of one bucket: name and email, each decoded (again) and Base64-encoded."""
    import base64

    out: list[dict[str, str]] = []
    for a in addresses:
        entry: dict[str, str] = {}
        personal = a.personal
        if personal is not None:
            entry["name"] = base64.b64encode(decode_text(personal).encode("utf-8", "surrogatepass")).decode()
        entry["email"] = base64.b64encode(decode_text(a.address).encode("utf-8", "surrogatepass")).decode()
        out.append(entry)
    return out
