"""The HTML policy for post content, and plain text for titles and summaries.

Post HTML comes from feeds and the CMS and ends up in mail clients, so it is cleaned with nh3
(ammonia) to a small set of tags that render well in email: no scripts, styles, event handlers
or non-http(s) URLs, and every link gets ``rel="noopener"``.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser
from typing import Literal
from urllib.parse import urljoin, urlsplit

import nh3

ALLOWED_TAGS = frozenset(
    {
        "a",
        "b",
        "blockquote",
        "br",
        "cite",
        "code",
        "em",
        "figcaption",
        "figure",
        "h2",
        "h3",
        "h4",
        "hr",
        "i",
        "img",
        "li",
        "ol",
        "p",
        "pre",
        "q",
        "small",
        "strong",
        "sub",
        "sup",
        "ul",
    }
)
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "width", "height"},
    "blockquote": {"cite"},
    "q": {"cite"},
}
URL_SCHEMES = frozenset({"http", "https", "mailto"})
# Removed together with their content (the text of a script is not prose).
DROP_WITH_CONTENT = frozenset({"script", "style", "template", "iframe", "object", "noscript"})
SUMMARY_MAX_CHARS = 500

_BLOCK_TAGS = frozenset(
    {
        "address",
        "article",
        "aside",
        "blockquote",
        "br",
        "dd",
        "div",
        "dl",
        "dt",
        "figcaption",
        "figure",
        "footer",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "header",
        "hr",
        "li",
        "ol",
        "p",
        "pre",
        "section",
        "table",
        "td",
        "th",
        "tr",
        "ul",
    }
)
_SPACES = re.compile(r"\s+")
_H1 = re.compile(r"<(/?)h1\b", re.IGNORECASE)
_H56 = re.compile(r"<(/?)h[56]\b", re.IGNORECASE)
# WordPress ends excerpts with " [&hellip;]" or " &#8230;"; a plain ellipsis reads better in mail.
_TRAILING_MORE = re.compile(r"\s*(?:\[\s*(?:…|\.\.\.)\s*\]|…|\.\.\.)\s*$")


def clean_html(fragment: str, base_url: str = "") -> str:
    """Sanitise an HTML fragment for email; relative URLs are resolved against ``base_url``."""
    if not fragment or not fragment.strip():
        return ""
    # Relative URLs mean nothing in a mail client: resolve them, or drop them without a base.
    url_relative: Literal["deny"] | tuple[Literal["rewrite_with_base"], str] = "deny"
    if is_http_url(base_url):
        url_relative = ("rewrite_with_base", base_url)
    # Keep the outline of headings outside the allowed h2-h4 instead of flattening them to text.
    fragment = _H1.sub(r"<\1h2", fragment)
    fragment = _H56.sub(r"<\1h4", fragment)
    cleaned = nh3.clean(
        fragment,
        tags=set(ALLOWED_TAGS),
        clean_content_tags=set(DROP_WITH_CONTENT),
        attributes={tag: set(names) for tag, names in ALLOWED_ATTRIBUTES.items()},
        url_schemes=set(URL_SCHEMES),
        link_rel="noopener",
        strip_comments=True,
        url_relative=url_relative,
    )
    return cleaned.strip()


class _TextExtractor(HTMLParser):
    """Collect the text of an HTML fragment, a space between blocks, nothing from scripts."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in DROP_WITH_CONTENT:
            self._skip_depth += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in DROP_WITH_CONTENT:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._skip_depth:
            self.parts.append(data)


def html_to_text(fragment: str) -> str:
    """Plain text of an HTML fragment: tags stripped, entities decoded, whitespace collapsed."""
    if not fragment:
        return ""
    parser = _TextExtractor()
    parser.feed(fragment)
    parser.close()
    text = "".join(parser.parts)
    return _SPACES.sub(" ", text).strip()


def truncate_words(text: str, limit: int) -> str:
    """Cut ``text`` to at most ``limit`` characters at a word boundary, marking the cut with …."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:.·-\u2013\u2014") + "…"


def summary_text(fragment: str, limit: int = SUMMARY_MAX_CHARS) -> str:
    """A plain-text summary of HTML or text, capped at ``limit`` characters."""
    text = html_to_text(fragment)
    if _TRAILING_MORE.search(text):
        text = _TRAILING_MORE.sub("", text)
        text = text if text.endswith((".", "!", "?", "…")) else text + "…"
    return truncate_words(text, limit)


def clean_title(value: str, limit: int = 1000) -> str:
    """A title as plain text: tags stripped, entities such as ``&#8217;`` decoded."""
    return truncate_words(html_to_text(value), limit)


def text_to_html(text: str) -> str:
    """Escaped paragraphs from plain text (JSON Feed ``content_text``)."""
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    return "".join("<p>" + html.escape(p).replace("\n", "<br>") + "</p>" for p in paragraphs)


def is_http_url(value: str) -> bool:
    """True for an absolute http(s) URL with a host."""
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in {"http", "https"} and bool(parts.hostname)


def absolute_http_url(value: str, base: str = "") -> str:
    """``value`` resolved against ``base`` when it is an http(s) URL, else the empty string."""
    value = (value or "").strip()
    if not value:
        return ""
    if base and is_http_url(base):
        try:
            value = urljoin(base, value)
        except ValueError:
            return ""
    return value if is_http_url(value) else ""
