"""Security headers every web response carries."""

from __future__ import annotations

from typing import Any

SECURITY_HEADERS: dict[bytes, bytes] = {
    # A mail's HTML is shown in a sandboxed srcdoc frame, which inherits this policy on top of its own
    # <meta> CSP. 'unsafe-inline' styles and https: images are allowed here only so the frame can show
    # mail styling and, once the user allows it for one message, remote images; the frame's own policy
    # (webclient/js/mail/htmlframe.js) blocks remote loads by default. Scripts stay 'self' only;
    # 'wasm-unsafe-eval' lets them compile WebAssembly (the vendored Argon2id of the password KDF, run in a
    # worker from 'self'), never eval JavaScript text. connect-src allows https: for one page: "Move to another
    # appliance" (webclient/js/ui/move.js) calls the new appliance's API, whose origin the user types, so no
    # fixed list can name it. This opens no new way out: a script of 'self' could already send data to any
    # https: host through img-src; scripts stay 'self' only, and a plain-http or ws: endpoint stays refused.
    # worker-src and manifest-src say what default-src and script-src already imply, so that the service worker
    # (/sw.js) and the web app manifest stay 'self' only should either of those ever be widened.
    b"Content-Security-Policy": (
        b"default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self' 'unsafe-inline'; "
        b"img-src 'self' data: blob: https:; worker-src 'self'; manifest-src 'self'; "
        b"connect-src 'self' https:; frame-src 'self' blob:; object-src 'none'; base-uri 'none'; "
        b"form-action 'self'; frame-ancestors 'none'"
    ),
    b"Strict-Transport-Security": b"max-age=63072000; includeSubDomains",
    b"X-Content-Type-Options": b"nosniff",
    b"X-Frame-Options": b"DENY",
    b"Referrer-Policy": b"no-referrer",
    b"Permissions-Policy": b"camera=(), microphone=(), geolocation=(), interest-cohort=()",
    b"Cross-Origin-Opener-Policy": b"same-origin",
    b"Cross-Origin-Resource-Policy": b"same-origin",
}


def apply_security_headers(request: Any, *, tls: bool = True) -> None:
    # Twisted announces its version in Server; a version helps nobody but an attacker.
    request.setHeader(b"Server", b"mailiverse")
    for name, value in SECURITY_HEADERS.items():
        if name == b"Strict-Transport-Security" and not tls:
            continue
        request.setHeader(name, value)
