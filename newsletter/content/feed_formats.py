"""Turning feed documents into posts: RSS 2.0 and Atom (through feedparser) and JSON Feed 1.x.

Pure functions on bytes: fetching is newsletter/content/feeds.py's job, and feedparser is never
given a URL, so it never fetches anything itself.
"""

from __future__ import annotations

import calendar
import io
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import feedparser

from newsletter.content.posts import GUID_MAX, LINK_MAX, PostInput, make_post_input
from newsletter.content.sanitize import absolute_http_url, clean_title, summary_text, text_to_html

# feedparser flags these as "bozo" although the entries are fine: servers often send feeds as
# text/html or text/plain, and a declared charset that differs from the real one is recovered.
_HARMLESS_BOZO = ("NonXMLContentType", "CharacterEncodingOverride")
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".avif")


class FeedFormatError(ValueError):
    """The document is not a feed we can read; the message says why."""


@dataclass
class ParsedFeed:
    """A feed's title, home link and entries, plus warnings about what was odd or skipped."""

    title: str = ""
    link: str = ""
    entries: list[PostInput] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def parse_feed(content: bytes, *, url: str = "", content_type: str = "") -> ParsedFeed:
    """Parse a feed document of any supported format; FeedFormatError when it is none of them."""
    head = content[:512].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"{") or "json" in content_type.lower():
        return parse_json_feed(content, url=url)
    return parse_xml_feed(content, url=url, content_type=content_type)


def parse_xml_feed(content: bytes, *, url: str = "", content_type: str = "") -> ParsedFeed:
    """RSS 2.0 / RSS 1.0 / Atom through feedparser, with WordPress extensions."""
    headers: dict[str, str] = {"content-type": content_type or "application/xml"}
    if absolute_http_url(url):
        headers["content-location"] = url
    # A stream, never bytes or str: feedparser treats those as a URL or a path and opens them.
    parsed = feedparser.parse(io.BytesIO(content), response_headers=headers, sanitize_html=False)
    result = ParsedFeed()
    exc = parsed.get("bozo_exception") if parsed.get("bozo") else None
    harmless = exc is None or type(exc).__name__ in _HARMLESS_BOZO
    if not parsed.entries and not parsed.get("version"):
        detail = "no channel or entries found" if harmless else _describe(exc)
        raise FeedFormatError(f"not an RSS, Atom or JSON feed ({detail})")
    if not harmless:
        result.warnings.append(f"feed is not well-formed, read what could be: {_describe(exc)}")
    meta = parsed.get("feed", {})
    result.title = clean_title(meta.get("title", ""), 500)
    result.link = absolute_http_url(meta.get("link", ""), url)
    base = result.link or url
    skipped = 0
    for entry in parsed.entries:
        item = _xml_entry(entry, base)
        if item is None:
            skipped += 1
        else:
            result.entries.append(item)
    if skipped:
        result.warnings.append(f"{_entries(skipped)} without a usable link or title skipped")
    return result


def _xml_entry(entry: Mapping[str, Any], base: str) -> PostInput | None:
    """One feedparser entry as a post, or None when it has no link or no title."""
    link = absolute_http_url(entry.get("link", ""), base)
    guid = (entry.get("id") or "").strip()
    if not link and entry.get("guidislink", False):
        link = absolute_http_url(guid, base)
    if not link or len(link) > LINK_MAX:
        return None
    if not guid or len(guid) > GUID_MAX:
        guid = link
    contents = entry.get("content") or []
    content_html = ""
    for part in contents:  # content:encoded / atom:content; prefer HTML over plain text
        value = part.get("value", "")
        if "html" in (part.get("type") or ""):
            content_html = value
            break
        content_html = content_html or text_to_html(value)
    summary = entry.get("summary", "")
    summary_is_text = (entry.get("summary_detail") or {}).get("type") == "text/plain"
    if summary_is_text:
        summary = text_to_html(summary)
    title = entry.get("title", "") or summary_text(summary or content_html, 120)
    if not clean_title(title):
        return None
    return make_post_input(
        guid=guid,
        link=link,
        title=title,
        published_at=_struct_time(entry.get("published_parsed") or entry.get("updated_parsed")),
        summary_html=summary,
        content_html=content_html,
        author=entry.get("author", ""),
        categories=[t.get("label") or t.get("term") or "" for t in entry.get("tags") or []],
        image_url=_xml_image(entry, base),
        base_url=link,
    )


def _struct_time(value: time.struct_time | None) -> datetime | None:
    """feedparser's UTC struct_time as an aware datetime."""
    if value is None:
        return None
    try:
        return datetime.fromtimestamp(calendar.timegm(value), UTC)
    except (OverflowError, ValueError, OSError):
        return None


def _xml_image(entry: Mapping[str, Any], base: str) -> str:
    """The entry's lead image: media:content, media:thumbnail, then an image enclosure."""
    for media in entry.get("media_content") or []:
        kind = (media.get("medium") or media.get("type") or "").lower()
        url = media.get("url", "")
        if kind.startswith("image") or (not kind and url.lower().endswith(_IMAGE_SUFFIXES)):
            found = absolute_http_url(url, base)
            if found:
                return found
    for media in entry.get("media_thumbnail") or []:
        found = absolute_http_url(media.get("url", ""), base)
        if found:
            return found
    for link in entry.get("links") or []:
        if link.get("rel") == "enclosure" and (link.get("type") or "").startswith("image/"):
            found = absolute_http_url(link.get("href", ""), base)
            if found:
                return found
    return ""


def _entries(count: int) -> str:
    """ "1 entry", "2 entries"."""
    return f"{count} entry" if count == 1 else f"{count} entries"


def _describe(exc: object) -> str:
    """A short human description of feedparser's bozo exception."""
    if exc is None:
        return "unknown problem"
    line = getattr(exc, "getLineNumber", None)
    where = f" at line {line()}" if callable(line) else ""
    return f"{exc}{where}"


# --- JSON Feed ---------------------------------------------------------------------------------


def parse_json_feed(content: bytes, *, url: str = "") -> ParsedFeed:
    """JSON Feed 1.0 / 1.1 (https://www.jsonfeed.org/version/1.1/)."""
    try:
        data = json.loads(content.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FeedFormatError(f"not valid JSON: {exc}") from None
    if not isinstance(data, dict) or not str(data.get("version", "")).startswith(
        "https://jsonfeed.org/version/"
    ):
        raise FeedFormatError('not a JSON Feed (no "version": "https://jsonfeed.org/version/1.1")')
    items = data.get("items")
    if not isinstance(items, list):
        raise FeedFormatError('JSON Feed without an "items" list')
    home = absolute_http_url(_str(data.get("home_page_url")), url)
    result = ParsedFeed(title=clean_title(_str(data.get("title")), 500), link=home)
    base = home or absolute_http_url(_str(data.get("feed_url")), url) or url
    feed_author = _json_author(data)
    skipped = 0
    for raw in items:
        item = _json_item(raw, base, feed_author) if isinstance(raw, dict) else None
        if item is None:
            skipped += 1
        else:
            result.entries.append(item)
    if skipped:
        result.warnings.append(f"{_entries(skipped)} without a usable url or a title skipped")
    return result


def _json_item(raw: Mapping[str, Any], base: str, feed_author: str) -> PostInput | None:
    """One JSON Feed item as a post, or None when it lacks what a post needs."""
    guid = raw.get("id")
    # The spec says id is a string; 1.0 feeds in the wild use numbers too.
    guid = str(guid).strip() if isinstance(guid, (str, int)) and not isinstance(guid, bool) else ""
    link = absolute_http_url(_str(raw.get("url")), base) or absolute_http_url(
        _str(raw.get("external_url")), base
    )
    if not link or len(link) > LINK_MAX:
        return None
    if not guid or len(guid) > GUID_MAX:
        guid = link
    content_html = _str(raw.get("content_html")) or text_to_html(_str(raw.get("content_text")))
    summary = _str(raw.get("summary"))
    title = _str(raw.get("title")) or summary_text(summary or content_html, 120)
    if not clean_title(title):
        return None
    published = _json_time(raw.get("date_published")) or _json_time(raw.get("date_modified"))
    tags = raw.get("tags")
    return make_post_input(
        guid=guid,
        link=link,
        title=title,
        published_at=published,
        summary_html=text_to_html(summary) if summary else "",
        content_html=content_html,
        author=_json_author(raw) or feed_author,
        categories=[t for t in tags if isinstance(t, str)] if isinstance(tags, list) else [],
        image_url=_str(raw.get("image")) or _str(raw.get("banner_image")),
        base_url=link,
    )


def _json_author(obj: Mapping[str, Any]) -> str:
    """Names from ``authors`` (1.1) or ``author`` (1.0), joined."""
    authors = obj.get("authors")
    if not isinstance(authors, list):
        authors = [obj.get("author")]
    names = [_str(a.get("name")) for a in authors if isinstance(a, dict)]
    return ", ".join(n for n in names if n)


def _json_time(value: object) -> datetime | None:
    """An RFC 3339 time from a JSON Feed, in UTC; None when absent or unreadable."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _str(value: object) -> str:
    """``value`` when it is a string, else the empty string (JSON Feed fields are optional)."""
    return value if isinstance(value, str) else ""
