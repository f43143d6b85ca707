"""HTML made safe for the JSON twin: the policy that decides which HTML a client is handed.

The sanitising itself is Ammonia's (``nh3``), a maintained sanitiser that parses like a browser
(html5ever) and serialises what it kept. This module holds the allow-lists and the rules Ammonia
has no option for:

* which URL each attribute may hold: ``srcset`` and ``background`` are not URL attributes to
  Ammonia, and ``data:`` is allowed for images only;
* inline CSS: Ammonia filters property names but not values, so values are checked here;
* remote resources: an image's ``src``/``srcset`` or a cell's ``background`` on http(s) becomes
  ``data-mv-remote-src``/``-srcset``/``-background``, which loads nothing; a client puts it back
  when its user asks to see remote content for that message;
* bounded work: html5ever's cost grows with the square of some hostile shapes (deeply nested
  blocks; thousands of distinct open ``<b>``/``<font>``, which the "reconstruct the active
  formatting elements" and "Noah's Ark" steps walk again and again). A part is cut after
  ``MAX_MARKUP`` tags, and formatting tags are parsed under a private name, as ordinary elements,
  and given their own name back in the output: only misnested bold or italics render differently.

Ammonia does not re-check what ``attribute_filter`` returns, so the filter only ever returns the
value it was given, that value behind a marker (renamed afterwards), a style it rebuilt from checked
declarations, or nothing.
"""

from __future__ import annotations

import itertools
import re
import secrets
from dataclasses import dataclass

import nh3

__all__ = ["MAX_MARKUP", "REMOTE_PREFIX", "SafeHtml", "make_safe"]

#: Markup tokens (``<`` then a letter, ``/``, ``!`` or ``?``) of one HTML part that are sanitised.
#: html5ever does work proportional to the open-element depth at some tokens, so 1 MB of nested
#: ``<div>`` takes minutes; this bound keeps the worst hostile part near a second and is several
#: times the markup of a large newsletter. The rest of a longer part is cut off, with a notice.
MAX_MARKUP = 20_000

#: What a remote reference's attribute is renamed to: ``src`` becomes ``data-mv-remote-src``.
REMOTE_PREFIX = "data-mv-remote-"

_TRUNCATED_NOTICE = (
    "<p><em>[The rest of this message's formatted text was not shown: it is too large to be made"
    " safe. The message itself is kept unchanged.]</em></p>"
)

_TAGS = frozenset(
    "a abbr acronym address b bdi bdo big blockquote br caption center cite code col colgroup dd del"
    " details dfn div dl dt em figcaption figure font h1 h2 h3 h4 h5 h6 hr i img ins kbd li mark ol p pre"
    " q rp rt ruby s samp small span strike strong sub summary sup table tbody td tfoot th thead time tr"
    " tt u ul var wbr".split()
)

#: Removed together with everything inside them (other unlisted tags lose the tag, keep the text).
_DROPPED_WITH_CONTENT = frozenset(
    "applet embed frame frameset head iframe math noembed noframes noscript object script style svg"
    " template title".split()
)

_ATTRIBUTES: dict[str, set[str]] = {
    "*": {"align", "dir", "height", "lang", "style", "title", "valign", "width"},
    "a": {"href"},
    "img": {"alt", "border", "hspace", "src", "srcset", "vspace"},
    "table": {"background", "bgcolor", "border", "cellpadding", "cellspacing", "rules", "summary"},
    "tr": {"bgcolor"},
    "td": {"abbr", "background", "bgcolor", "colspan", "nowrap", "rowspan", "scope"},
    "th": {"abbr", "background", "bgcolor", "colspan", "nowrap", "rowspan", "scope"},
    "col": {"span"},
    "colgroup": {"span"},
    "font": {"color", "face", "size"},
    "hr": {"color", "noshade", "size"},
    "ol": {"reversed", "start", "type"},
    "ul": {"type"},
    "li": {"type", "value"},
    "details": {"open"},
    "time": {"datetime"},
    "del": {"datetime"},
    "ins": {"datetime"},
}

#: Ammonia's first wall for ``href`` and ``src``; ``_filter`` narrows it per attribute.
_URL_SCHEMES = {"cid", "data", "http", "https", "mailto"}

#: Inline CSS properties kept: layout and type, nothing that positions over the page or animates.
#: Values are checked by ``_css_value_safe``, which is what keeps ``background`` from loading.
_STYLE_PROPERTIES = frozenset(
    "background background-color border border-bottom border-bottom-color border-bottom-style"
    " border-bottom-width border-collapse border-color border-left border-left-color border-left-style"
    " border-left-width border-radius border-right border-right-color border-right-style"
    " border-right-width border-spacing border-style border-top border-top-color border-top-style"
    " border-top-width border-width box-sizing caption-side clear color direction display empty-cells"
    " float font font-family font-size font-style font-variant font-weight height letter-spacing"
    " line-height list-style-position list-style-type margin margin-bottom margin-left margin-right"
    " margin-top max-height max-width min-height min-width opacity overflow overflow-wrap padding"
    " padding-bottom padding-left padding-right padding-top table-layout text-align text-decoration"
    " text-indent text-overflow text-transform vertical-align visibility white-space width word-break"
    " word-spacing word-wrap".split()
)
#: The only CSS functions a value may call: none of them can name a URL.
_CSS_FUNCTIONS = frozenset({"calc", "hsl", "hsla", "rgb", "rgba"})
_CSS_FUNCTION = re.compile(r"([a-z0-9_-]*)\s*\(")
#: Escapes and comments could spell a banned word in pieces; ``:`` and ``@`` belong to no kept value.
_CSS_FORBIDDEN = ("\\", "/*", ":", "@", "<")

_MARKUP = re.compile(r"<[A-Za-z/!?]")
#: The formatting elements whose tree-building steps are quadratic (``a`` and ``nobr`` are not).
_FORMATTING = re.compile(r"<(/?)(b|big|code|em|font|i|s|small|strike|strong|tt|u)(?=[\t\n\f\r />])", re.IGNORECASE)
_FORMATTING_NAMES = ("b", "big", "code", "em", "font", "i", "s", "small", "strike", "strong", "tt", "u")
#: What a browser ignores in a URL before reading its scheme.
_URL_IGNORED = re.compile(r"[\t\n\r]")
_SCHEME = re.compile(r"([a-z][a-z0-9+.-]*):")
_DATA_IMAGE = re.compile(r"data:image/(?:gif|jpeg|png|webp)[;,]")
_REMOTE_SRCSET = re.compile(
    r"\s*https?://[^\s,]+(?:\s+[0-9.]+[wx])?(?:\s*,\s*https?://[^\s,]+(?:\s+[0-9.]+[wx])?)*\s*,?\s*",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class SafeHtml:
    """The safe form of one HTML part, and what a reader may want to say about it."""

    html: str
    #: remote references made inert (``data-mv-remote-*``), which the reader may restore
    remote: int
    #: whether the part was longer than ``MAX_MARKUP`` and its end replaced by a notice
    truncated: bool


def make_safe(html: str, *, max_markup: int = MAX_MARKUP) -> SafeHtml:
    """The HTML a client may render: nothing that runs, submits or loads until its user asks."""
    beyond = next(itertools.islice(_MARKUP.finditer(html), max_markup, None), None)
    if beyond is not None:
        html = html[: beyond.start()]
    # Fresh markers per call, which the sender cannot write: one before every remote value the
    # filter keeps (renamed below), one in front of every formatting tag's name (removed below).
    marker = f"mvr{secrets.token_hex(16)}-"
    private = f"mvt{secrets.token_hex(16)}-"
    html = _FORMATTING.sub(lambda m: f"<{m.group(1)}{private}{m.group(2)}", html)

    def attribute_filter(tag: str, attribute: str, value: str) -> str | None:
        return _filter(marker, tag, attribute, value)

    cleaned = nh3.clean(
        html,
        tags=_TAGS | {private + name for name in _FORMATTING_NAMES},
        clean_content_tags=set(_DROPPED_WITH_CONTENT),
        attributes={**_ATTRIBUTES, private + "font": _ATTRIBUTES["font"]},
        attribute_filter=attribute_filter,
        strip_comments=True,
        link_rel="noopener noreferrer",
        url_schemes=_URL_SCHEMES,
        url_relative="deny",
        filter_style_properties=set(_STYLE_PROPERTIES),
    )
    # html5ever writes every attribute as ` name="value"`, so the marked values sit right after `="`.
    cleaned, remote = re.subn(f' (src|srcset|background)="{marker}', f' {REMOTE_PREFIX}\\1="', cleaned)
    # Wherever the private name went (a tag, or text and attribute values that merely looked like one).
    cleaned = cleaned.replace(private, "")
    if beyond is not None:
        cleaned += _TRUNCATED_NOTICE
    return SafeHtml(cleaned, remote, beyond is not None)


def _filter(marker: str, tag: str, attribute: str, value: str) -> str | None:
    if attribute == "style":
        return _safe_style(value)
    if attribute == "srcset":
        return marker + value if _REMOTE_SRCSET.fullmatch(value) else None
    if attribute not in ("href", "src", "background"):
        return value
    url = _URL_IGNORED.sub("", value).strip("".join(map(chr, range(0x21)))).lower()
    found = _SCHEME.match(url)
    scheme = found.group(1) if found else None
    if attribute == "href":
        return value if scheme in ("http", "https", "mailto") else None
    if scheme in ("http", "https"):
        return marker + value
    if scheme == "cid" or (tag == "img" and attribute == "src" and _DATA_IMAGE.match(url)):
        return value
    return None


def _safe_style(style: str) -> str | None:
    """The declarations of an inline style whose property is listed and whose value cannot load or run.

    Splitting at every ``;`` may cut a quoted string; the pieces are then checked like any other,
    and Ammonia parses the result again when it filters the property names.
    """
    kept = []
    for declaration in style.split(";"):
        name, colon, value = declaration.partition(":")
        name = name.strip().lower()
        value = value.strip()
        if colon and name in _STYLE_PROPERTIES and _css_value_safe(value):
            kept.append(f"{name}:{value}")
    return ";".join(kept) or None


def _css_value_safe(value: str) -> bool:
    lowered = value.lower()
    if any(token in lowered for token in _CSS_FORBIDDEN):
        return False
    return all(name in _CSS_FUNCTIONS for name in _CSS_FUNCTION.findall(lowered))
