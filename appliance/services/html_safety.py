"""Showing inbound mail safely: its HTML through an allow-list sanitiser, its text escaped.

Inbound mail is hostile. HTML goes through nh3 (the Python binding of Ammonia, an html5ever
parser with an allow-list serialiser), so what comes out is re-serialised from a parse tree
and nothing the sender wrote reaches the page as markup unless the list allows it:

- no script, style, iframe, form, object, embed, svg, math, template or noscript (their content
  is dropped as well), no event handler, style, class or id attribute;
- links only to http:, https: and mailto: (no javascript:, data:, or relative URLs that would
  point into MailFlow itself), each with rel="noopener noreferrer nofollow" and target=_blank;
- no remote images by default: an image keeps its alt text and loses its source, and the hosts
  it would have loaded from are reported, so the page can say which were blocked. Loading
  them is a per-message choice that the web layer serves in a sandboxed frame of its own.

Plain text is HTML-escaped, and http(s) URLs in it become links; nothing else is interpreted.
The stored body is never changed: sanitising happens each time a message is shown.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

import nh3

LINK_REL = "noopener noreferrer nofollow"
MAX_HTML = 2 * 1024 * 1024  # a larger body is cut before parsing (the parser's work is linear, but bounded)
_TAGS = frozenset({
    "a", "abbr", "acronym", "b", "bdi", "bdo", "blockquote", "br", "caption", "center", "cite", "code", "col",
    "colgroup", "dd", "del", "dfn", "div", "dl", "dt", "em", "figcaption", "figure", "font", "h1", "h2", "h3", "h4",
    "h5", "h6", "hr", "i", "img", "ins", "kbd", "li", "mark", "ol", "p", "pre", "q", "s", "samp", "small", "span",
    "strike", "strong", "sub", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "tt", "u", "ul", "var",
    "wbr"})
# Dropped with everything inside them (for the others outside _TAGS only the tag goes).
_DROP_WITH_CONTENT = frozenset({
    "script", "style", "title", "head", "noscript", "template", "iframe", "frame", "frameset", "object", "embed",
    "applet", "svg", "math", "form", "select", "textarea", "button", "xmp", "noembed", "noframes", "plaintext",
    "audio", "video", "canvas"})
_ATTRIBUTES = {
    "*": {"title", "dir", "lang"},
    "a": {"href"},
    "img": {"src", "alt", "width", "height"},
    "td": {"colspan", "rowspan", "align"},
    "th": {"colspan", "rowspan", "align", "scope"},
    "ol": {"start"},
    "blockquote": {"cite"},
    "q": {"cite"},
}
_LINK_SCHEMES = ("http:", "https:", "mailto:")
_IMAGE_SCHEMES = ("http:", "https:")
_URL_IN_TEXT = re.compile(r"\bhttps?://[^\s<>\"']+", re.I)
_TRAILING_PUNCTUATION = ".,;:!?)]}'\""


@dataclass(frozen=True)
class SafeHtml:
    """Sanitised markup, and the remote images left out of it."""

    html: str
    blocked_images: int = 0
    blocked_hosts: tuple[str, ...] = ()


def _scheme_is(value: str, schemes: tuple[str, ...]) -> bool:
    return value.strip().lower().startswith(schemes)


def _host(url: str) -> str:
    try:
        return (urlsplit(url.strip()).hostname or "").lower()
    except ValueError:
        return ""


def sanitize_html(markup: str | None, *, images: bool = False) -> SafeHtml:
    """Allow-listed HTML; with images=False every remote image loses its source (counted,
    and its host reported)."""
    if not markup:
        return SafeHtml("")
    blocked: list[str] = []

    def keep(tag: str, attribute: str, value: str) -> str | None:
        # Called by the sanitiser for each allowed attribute: URLs are checked here as well as
        # by its scheme list, so relative URLs (which would point into MailFlow) go too.
        if attribute in ("href", "cite"):
            return value if _scheme_is(value, _LINK_SCHEMES) else None
        if tag == "img" and attribute == "src":
            if not _scheme_is(value, _IMAGE_SCHEMES):
                return None
            if not images:
                blocked.append(_host(value))
                return None
            return value
        if tag == "img" and attribute in ("width", "height") and not images:
            return None  # a source-less image keeps no box: its alt text stands in for it
        return value

    cleaned = nh3.clean(markup[:MAX_HTML], tags=set(_TAGS), clean_content_tags=set(_DROP_WITH_CONTENT),
                        attributes={k: set(v) for k, v in _ATTRIBUTES.items()}, attribute_filter=keep,
                        link_rel=LINK_REL, url_schemes={"http", "https", "mailto"}, strip_comments=True,
                        set_tag_attribute_values={"a": {"target": "_blank"}})
    hosts = tuple(dict.fromkeys(h for h in blocked if h))
    return SafeHtml(cleaned, blocked_images=len(blocked), blocked_hosts=hosts)


def text_to_html(text: str | None) -> str:
    """Plain text as HTML: escaped, with http(s) URLs made into links. Line breaks are kept by
    the stylesheet (white-space: pre-wrap), not by markup."""
    if not text:
        return ""
    out: list[str] = []
    last = 0
    for match in _URL_IN_TEXT.finditer(text):
        url = match.group(0).rstrip(_TRAILING_PUNCTUATION)
        end = match.start() + len(url)
        out.append(html.escape(text[last:match.start()]))
        out.append(f'<a href="{html.escape(url)}" rel="{LINK_REL}" target="_blank">{html.escape(url)}</a>')
        last = end
    out.append(html.escape(text[last:]))
    return "".join(out)
