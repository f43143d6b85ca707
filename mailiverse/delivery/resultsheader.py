"""The stored original's ``Authentication-Results`` header (RFC 8601): ours, prepended, and the only one in our name.

The header is written from the judge's results with authres (one result per line), and carries only
result words and plain DNS names: nothing the sender wrote can reach it but names checked to be
plain. Any incoming ``Authentication-Results`` header that claims the appliance's authserv-id is
removed (RFC 8601 §5), so a reader can trust the one that does; every other byte of the message
stays as it came.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from authres import DKIMAuthenticationResult, SPFAuthenticationResult
from authres.arc import ARCAuthenticationResult
from authres.dmarc import DMARCAuthenticationResult

from mailiverse.delivery.verdicts import AuthResult

_NAME = b"authentication-results"
#: One header field: its first line and every folded line after it (bare LF tolerated).
_FIELD = re.compile(rb"[^\n]*\n(?:[ \t][^\n]*\n)*")


def results_header(authserv_id: str, results: Sequence[AuthResult]) -> bytes:
    """``Authentication-Results: <authserv_id>;`` and one result per folded line (``none`` without any)."""
    lines = [str(_resinfo(result)) for result in results] or ["none"]
    return (f"Authentication-Results: {authserv_id};" + ";".join("\r\n\t" + line for line in lines) + "\r\n").encode(
        "ascii"
    )


def _resinfo(
    result: AuthResult,
) -> SPFAuthenticationResult | DKIMAuthenticationResult | DMARCAuthenticationResult | ARCAuthenticationResult:
    if result.method == "spf":
        domain = result.domain or None
        if result.identity == "helo":
            return SPFAuthenticationResult(result=result.result, smtp_helo=domain)
        return SPFAuthenticationResult(result=result.result, smtp_mailfrom=domain)
    if result.method == "dkim":
        return DKIMAuthenticationResult(
            result=result.result, header_d=result.domain or None, header_s=result.selector or None
        )
    if result.method == "dmarc":
        return DMARCAuthenticationResult(
            result=result.result, header_from=result.domain or None, policy=result.policy or None
        )
    return ARCAuthenticationResult(result=result.result)


def restamp(raw: bytes, authserv_id: str, header: bytes) -> bytes:
    """``header`` followed by ``raw`` without the ``Authentication-Results`` fields that claim ``authserv_id``."""
    end = raw.find(b"\r\n\r\n")
    end = len(raw) if end < 0 else end + 2
    pieces = [header]
    kept_from = 0
    for field in _FIELD.finditer(raw, 0, end):
        if _claims(field.group(), authserv_id):
            pieces.append(raw[kept_from : field.start()])
            kept_from = field.end()
    pieces.append(raw[kept_from:])
    return b"".join(pieces)


def _claims(field: bytes, authserv_id: str) -> bool:
    name, colon, value = field.partition(b":")
    if not colon or name.rstrip(b" \t").lower() != _NAME:
        return False
    return authserv_id_of(value.decode("latin-1")) == authserv_id.lower()


def authserv_id_of(value: str) -> str:
    """The authserv-id an ``Authentication-Results`` value starts with (comments skipped), lower-cased."""
    text = value.replace("\r", "").replace("\n", "")
    position = _skip_cfws(text, 0)
    if text[position : position + 1] == '"':
        token, position = [], position + 1
        while position < len(text) and text[position] != '"':
            if text[position] == "\\":
                position += 1
            token.append(text[position : position + 1])
            position += 1
        return "".join(token).lower()
    match = re.match(r"[^\s;(]*", text[position:])
    return match.group().lower() if match else ""


def _skip_cfws(text: str, position: int) -> int:
    """The position after any white space and (nested, escaped) comments from ``position``."""
    depth = 0
    while position < len(text):
        char = text[position]
        if depth and char == "\\":
            position += 2
            continue
        if char == "(":
            depth += 1
        elif char == ")" and depth:
            depth -= 1
        elif not depth and char not in " \t":
            return position
        position += 1
    return position
