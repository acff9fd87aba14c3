"""The HTML policy for post content, and plain text for titles and summaries.

Post HTML comes from feeds and the CMS and ends up in mail clients, so it is cleaned with nh3
(ammonia) to a small set of tags that render well in email: no scripts, styles, event handlers
or non-http(s) URLs, and every link gets ``rel="noopener"``.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Iterator
from typing import Literal
from urllib.parse import urljoin, urlsplit

import nh3

from newsletter.content.markup_cost import too_costly

log = logging.getLogger(__name__)

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
# The start or end of a block element, whose text must not run into the next block's.
_BLOCK_TAG = re.compile(r"</?(?:" + "|".join(sorted(_BLOCK_TAGS)) + r")(?=[\s/>])", re.IGNORECASE)
_BLOCK_START = re.compile(r"<(?:" + "|".join(sorted(_BLOCK_TAGS)) + r")(?=[\s/>])", re.IGNORECASE)
_SURROGATE = re.compile("[\ud800-\udfff]")
_UrlRelative = Literal["deny"] | tuple[Literal["rewrite_with_base"], str]
# Text extraction runs nh3 on pieces of this size (see _pieces): small enough that a piece's
# worst case is a few milliseconds, large enough that real titles and summaries are one piece.
TEXT_PIECE_CHARS = 4 * 1024
# HTML that html5ever could not parse in linear time in one piece (see markup_cost) is cleaned in
# independent pieces of this size: a piece's worst case is a few milliseconds.
HTML_PIECE_CHARS = 2 * 1024
_H1 = re.compile(r"<(/?)h1\b", re.IGNORECASE)
_H56 = re.compile(r"<(/?)h[56]\b", re.IGNORECASE)
# WordPress ends excerpts with " [&hellip;]" or " &#8230;"; a plain ellipsis reads better in mail.
_TRAILING_MORE = re.compile(r"\s*(?:\[\s*(?:…|\.\.\.)\s*\]|…|\.\.\.)\s*$")


def clean_html(fragment: str, base_url: str = "") -> str:
    """Sanitise an HTML fragment for email; relative URLs are resolved against ``base_url``."""
    if not fragment or not fragment.strip():
        return ""
    # Relative URLs mean nothing in a mail client: resolve them, or drop them without a base.
    url_relative: _UrlRelative = "deny"
    if is_http_url(base_url):
        url_relative = ("rewrite_with_base", base_url)
    # Keep the outline of headings outside the allowed h2-h4 instead of flattening them to text.
    fragment = _H1.sub(r"<\1h2", _scrub(fragment))
    fragment = _H56.sub(r"<\1h4", fragment)
    reason = too_costly(fragment)
    if reason is None:
        return _clean(fragment, url_relative).strip()
    # Markup that would cost html5ever quadratic time in one piece (hostile, or broken beyond
    # what any editor writes) keeps its structure piece by piece: each piece is cleaned on its
    # own, so its unclosed elements end with it, and the sum of safe fragments is safe.
    pieces = list(_pieces(fragment, HTML_PIECE_CHARS, _BLOCK_START))
    log.info(
        "clean_html: %s in %d characters; cleaned in %d pieces", reason, len(fragment), len(pieces)
    )
    return "".join(_clean(piece, url_relative) for piece in pieces).strip()


def _clean(fragment: str, url_relative: _UrlRelative) -> str:
    """``fragment`` cleaned by nh3 with the policy of this module."""
    return nh3.clean(
        fragment,
        tags=set(ALLOWED_TAGS),
        clean_content_tags=set(DROP_WITH_CONTENT),
        attributes={tag: set(names) for tag, names in ALLOWED_ATTRIBUTES.items()},
        url_schemes=set(URL_SCHEMES),
        link_rel="noopener",
        strip_comments=True,
        url_relative=url_relative,
    )


def html_to_text(fragment: str) -> str:
    """Plain text of an HTML fragment: tags stripped, entities decoded, whitespace collapsed."""
    if not fragment:
        return ""
    text = "".join(_text_of(piece) for piece in _pieces(_scrub(fragment), TEXT_PIECE_CHARS))
    return _SPACES.sub(" ", text).strip()


def _text_of(piece: str) -> str:
    """The text of one piece: a space before each block tag, then nh3 strips every tag."""
    spaced = _BLOCK_TAG.sub(r" \g<0>", piece)
    cleaned = nh3.clean(
        spaced, tags=set(), clean_content_tags=set(DROP_WITH_CONTENT), strip_comments=True
    )
    # nh3 returns escaped text ("&lt;", "&amp;"); the caller wants the characters.
    return html.unescape(cleaned)


def _pieces(fragment: str, size: int, before: re.Pattern[str] | None = None) -> Iterator[str]:
    """``fragment`` in pieces of at most ``size`` characters, each cut just before a tag.

    html5ever is linear on flat input but walks its stack of open elements for every stray end
    tag, so 20 000 unclosed ``<b>`` then 20 000 ``</x>`` cost quadratic time. Text needs no
    structure: pieces bound that stack, making the whole extraction linear. With ``before``,
    a cut before a match of it in the second half of a piece is preferred (a block start tag,
    so that a paragraph stays whole).
    """
    start = 0
    while len(fragment) - start > size:
        end = start + size
        cut = -1
        if before is not None:
            # The last match in the second half: a piece is never less than half full for it.
            for match in before.finditer(fragment, start + size // 2, end):
                cut = match.start()
        # Between two tags ("><") is the cleanest cut, then before any tag, then at a space (never
        # inside an entity); only a piece of one unbroken word is cut anywhere.
        if cut <= start:
            cut = fragment.rfind("><", start + 1, end) + 1 or fragment.rfind("<", start + 1, end)
        if cut <= start:
            cut = fragment.rfind(" ", start + 1, end)
        if cut <= start:
            cut = end
        yield fragment[start:cut]
        start = cut
    yield fragment[start:]


def _scrub(value: str) -> str:
    """``value`` with lone surrogates (valid in JSON, not in UTF-8) made U+FFFD for nh3."""
    return _SURROGATE.sub("\ufffd", value)


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
