"""Hostile feeds as properties: any bytes, and feed-shaped documents with any content, are read
as a feed or refused as "not a feed"; no other exception escapes (the fetcher would log a
traceback and retry a document that can never parse)."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newsletter.content.feed_formats import FeedFormatError, ParsedFeed, parse_feed

PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=300)
URLS = st.one_of(
    TEXT, st.sampled_from(["https://news.example.com/feed", "javascript:alert(1)", ""])
)


def read(content: bytes, url: str = "", content_type: str = "") -> ParsedFeed | None:
    """The parsed feed, or None when it is refused as not a feed (the only way it may fail)."""
    try:
        return parse_feed(content, url=url, content_type=content_type)
    except FeedFormatError:
        return None


@PROPERTY
@given(
    content=st.binary(max_size=4096),
    content_type=st.sampled_from(["", "application/json", "text/xml"]),
)
def test_any_bytes_are_a_feed_or_not_a_feed(content: bytes, content_type: str) -> None:
    read(content, content_type=content_type)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;")


@st.composite
def rss(draw: st.DrawFn) -> bytes:
    """An RSS 2.0 document whose fields are anything, escaped or raw markup."""
    items = []
    for _ in range(draw(st.integers(0, 5))):
        raw = draw(st.booleans())
        title, link, body = draw(TEXT), draw(URLS), draw(TEXT)
        date = draw(st.sampled_from(["Tue, 14 May 2024 08:00:00 +0000", "yesterday", "", "9" * 40]))
        body = body if raw else _escape(body)
        items.append(
            f"<item><title>{_escape(title)}</title><link>{_escape(link)}</link>"
            f"<description>{body}</description><pubDate>{date}</pubDate>"
            f"<guid>{_escape(draw(TEXT))}</guid></item>"
        )
    doc = f'<?xml version="1.0"?><rss version="2.0"><channel><title>{_escape(draw(TEXT))}</title>'
    return (doc + "".join(items) + "</channel></rss>").encode("utf-8", "surrogatepass")


@PROPERTY
@given(document=rss())
def test_any_rss_document_is_read_or_refused(document: bytes) -> None:
    parsed = read(document, url="https://news.example.com/feed")
    if parsed is not None:
        assert len(parsed.entries) <= document.count(b"<item>")


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4),
    max_leaves=30,
)


@PROPERTY
@given(
    items=st.lists(
        st.dictionaries(
            st.sampled_from(
                [
                    "id",
                    "url",
                    "title",
                    "content_html",
                    "content_text",
                    "summary",
                    "date_published",
                    "image",
                    "author",
                    "authors",
                    "tags",
                ]
            ),
            JSON_VALUES,
        ),
        max_size=5,
    ),
    top=st.dictionaries(
        st.sampled_from(["title", "home_page_url", "version", "author"]), JSON_VALUES
    ),
)
def test_any_json_feed_is_read_or_refused(
    items: list[dict[str, object]], top: dict[str, object]
) -> None:
    document = {"version": "https://jsonfeed.org/version/1.1", **top, "items": items}
    read(json.dumps(document).encode(), url="https://news.example.com/feed.json")
