"""The site's posts: storing them from feeds and CMS pushes, and finding them for digests.

A post is identified by its guid (the feed entry id, or the CMS's id); when a guid is new but the
link is known, the post's guid changed and the stored post is updated rather than duplicated.
Everything stored is already clean: titles and summaries are plain text, content is sanitised HTML,
times are UTC.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from newsletter.content.sanitize import (
    absolute_http_url,
    clean_html,
    clean_title,
    html_to_text,
    is_http_url,
    summary_text,
    truncate_words,
)
from newsletter.store.db import utcnow
from newsletter.store.models import Post

log = logging.getLogger(__name__)

GUID_MAX = 1000
LINK_MAX = 2000
AUTHOR_MAX = 300
CATEGORY_MAX = 100
CATEGORIES_MAX = 50

Outcome = Literal["created", "updated", "unchanged"]


class InvalidPost(ValueError):
    """A pushed post is malformed; ``field`` names what is wrong."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


@dataclass(frozen=True)
class PostInput:
    """A post ready to store: plain-text title and summary, sanitised HTML, UTC time."""

    guid: str
    link: str
    title: str
    # None when the source gave no date: "now" for a new post, the stored time for a known one.
    published_at: datetime | None
    summary: str = ""
    content_html: str = ""
    author: str = ""
    categories: tuple[str, ...] = ()
    image_url: str = ""


@dataclass(frozen=True)
class Stored:
    """What happened to one input post."""

    post: Post
    outcome: Outcome


@dataclass
class UpsertResult:
    """The posts an upsert touched, in input order, and the counts."""

    items: list[Stored] = field(default_factory=list)

    def count(self, outcome: Outcome) -> int:
        """How many inputs had ``outcome``."""
        return sum(1 for item in self.items if item.outcome == outcome)


def make_post_input(
    *,
    guid: str,
    link: str,
    title: str,
    published_at: datetime | None,
    summary_html: str = "",
    content_html: str = "",
    author: str = "",
    categories: Iterable[str] = (),
    image_url: str = "",
    base_url: str = "",
) -> PostInput:
    """Clean raw values from a feed or the CMS into a :class:`PostInput`."""
    content = clean_html(content_html, base_url or link)
    summary = summary_text(summary_html) if summary_html.strip() else summary_text(content)
    return PostInput(
        guid=guid.strip(),
        link=link.strip(),
        title=clean_title(title),
        published_at=as_utc(published_at) if published_at is not None else None,
        summary=summary,
        content_html=content,
        author=truncate_words(html_to_text(author), AUTHOR_MAX),
        categories=clean_categories(categories),
        image_url=absolute_http_url(image_url, base_url or link)[:LINK_MAX],
    )


def clean_categories(values: Iterable[str]) -> tuple[str, ...]:
    """Plain-text categories, blanks and case-insensitive duplicates dropped, order kept."""
    seen: set[str] = set()
    out: list[str] = []
    for value in values:
        name = html_to_text(str(value))[:CATEGORY_MAX].strip()
        key = name.casefold()
        if name and key not in seen:
            seen.add(key)
            out.append(name)
    return tuple(out[:CATEGORIES_MAX])


def as_utc(value: datetime) -> datetime:
    """``value`` in UTC; a naive time is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


# --- storing -----------------------------------------------------------------------------------


def upsert_posts(
    session: Session,
    inputs: Sequence[PostInput],
    *,
    feed_id: int | None = None,
    revive: bool = False,
) -> UpsertResult:
    """Create new posts, update changed ones, leave unchanged ones untouched; flushes, no commit.

    ``revive`` brings a retracted post back (an explicit CMS push does; a feed that still lists
    a retracted article does not).
    """
    result = UpsertResult()
    if not inputs:
        return result
    guids = {item.guid for item in inputs}
    links = {item.link for item in inputs if item.link}
    by_guid, by_link = _known_posts(session, guids, links)

    now = utcnow()
    for item in inputs:
        post = _stored_post(item, guids, by_guid, by_link)
        if post is None:
            post = _new_post(item, feed_id=feed_id, now=now)
            session.add(post)
            outcome: Outcome = "created"
        else:
            changed = _apply(post, item, revive=revive)
            outcome = "updated" if changed else "unchanged"
        by_guid[post.guid] = post
        if post.link:
            by_link.setdefault(post.link, post)
        result.items.append(Stored(post, outcome))
    session.flush()
    return result


def _known_posts(
    session: Session, guids: set[str], links: set[str]
) -> tuple[dict[str, Post], dict[str, Post]]:
    """Stored posts with any of these guids or links, indexed by guid and by link."""
    known = session.scalars(
        select(Post).where(or_(Post.guid.in_(guids), Post.link.in_(links)))
    ).all()
    by_guid = {post.guid: post for post in known}
    by_link: dict[str, Post] = {}
    for row in sorted(known, key=lambda p: p.id):  # the oldest post owns a shared link
        by_link.setdefault(row.link, row)
    return by_guid, by_link


def _stored_post(
    item: PostInput, guids: set[str], by_guid: dict[str, Post], by_link: dict[str, Post]
) -> Post | None:
    """The stored post ``item`` is about: same guid, else same link (``guids``: the batch's)."""
    post = by_guid.get(item.guid)
    if post is None and item.link:
        post = by_link.get(item.link)
        # A post found by link under another guid whose own guid is still in this batch is
        # a different article sharing the link: do not steal it.
        if post is not None and post.guid in guids and post.guid != item.guid:
            post = None
    return post


def _new_post(item: PostInput, *, feed_id: int | None, now: datetime) -> Post:
    """A new post row for ``item`` (published now when the source gave no date)."""
    return Post(
        feed_id=feed_id,
        guid=item.guid,
        link=item.link,
        title=item.title,
        summary=item.summary,
        content_html=item.content_html,
        author=item.author,
        categories=list(item.categories),
        image_url=item.image_url,
        published_at=item.published_at or now,
    )


def _apply(post: Post, item: PostInput, *, revive: bool) -> bool:
    """Copy changed fields of ``item`` onto ``post``; True when anything changed."""
    if post.retracted_at is not None:
        if not revive:
            return False
        post.retracted_at = None
        changed = True
    else:
        changed = False
    values: dict[str, Any] = {
        "guid": item.guid,
        "link": item.link,
        "title": item.title,
        "summary": item.summary,
        "content_html": item.content_html,
        "author": item.author,
        "categories": list(item.categories),
        "image_url": item.image_url,
    }
    if item.published_at is not None:
        values["published_at"] = item.published_at
    for name, value in values.items():
        if getattr(post, name) != value:
            setattr(post, name, value)
            changed = True
    return changed


def find_post(session: Session, key: str) -> Post | None:
    """The post whose guid is ``key``, else whose id is ``key`` when it is a number."""
    post = session.scalar(select(Post).where(Post.guid == key))
    if post is None and key.isascii() and key.isdigit() and len(key) < 19:
        post = session.get(Post, int(key))
    return post


def retract_post(session: Session, key: str) -> Post | None:
    """Mark a post (by guid or id) retracted so no digest includes it; None if unknown."""
    post = find_post(session, key)
    if post is not None and post.retracted_at is None:
        post.retracted_at = utcnow()
        session.flush()
    return post


# --- reading -----------------------------------------------------------------------------------


def recent_posts(
    session: Session,
    since: datetime,
    until: datetime,
    categories: Sequence[str] = (),
) -> list[Post]:
    """Live posts published in ``(since, until]``, newest first, optionally in any of
    ``categories`` (compared case-insensitively)."""
    rows = session.scalars(
        select(Post)
        .where(
            Post.published_at > since,
            Post.published_at <= until,
            Post.retracted_at.is_(None),
        )
        .order_by(Post.published_at.desc(), Post.id.desc())
    ).all()
    wanted = {c.strip().casefold() for c in categories if c.strip()}
    if not wanted:
        return list(rows)
    return [p for p in rows if any(c.casefold() in wanted for c in p.categories or ())]


def latest_posts(
    session: Session,
    *,
    since: datetime | None = None,
    limit: int = 20,
    before: tuple[datetime, int] | None = None,
) -> list[Post]:
    """The newest live posts (published after ``since`` when given), at most ``limit``;
    ``before`` (published_at, id) of a post: only those that come after it in this order."""
    query = select(Post).where(Post.retracted_at.is_(None))
    if since is not None:
        query = query.where(Post.published_at > since)
    if before is not None:
        published, post_id = before
        query = query.where(
            or_(
                Post.published_at < published,
                and_(Post.published_at == published, Post.id < post_id),
            )
        )
    query = query.order_by(Post.published_at.desc(), Post.id.desc()).limit(limit)
    return list(session.scalars(query))


def all_categories(session: Session) -> list[str]:
    """Every category of live posts, once each (its most used spelling), sorted by name."""
    spellings: dict[str, Counter[str]] = {}
    rows = session.execute(
        select(Post.categories).where(Post.retracted_at.is_(None)).execution_options(yield_per=1000)
    )
    for (names,) in rows:
        for name in names or ():
            spellings.setdefault(name.casefold(), Counter())[name] += 1
    chosen = [counter.most_common(1)[0][0] for counter in spellings.values()]
    return sorted(chosen, key=str.casefold)


def post_as_json(post: Post) -> dict[str, Any]:
    """A post as the API shows it."""
    return {
        "id": post.id,
        "guid": post.guid,
        "url": post.link,
        "title": post.title,
        "published_at": post.published_at.isoformat(),
        "summary": post.summary,
        "content_html": post.content_html,
        "author": post.author,
        "categories": list(post.categories or ()),
        "image_url": post.image_url,
        "feed_id": post.feed_id,
        "updated_at": post.updated_at.isoformat() if post.updated_at else None,
    }


# --- validating pushed posts -------------------------------------------------------------------

PUSH_FIELDS = frozenset(
    {
        "guid",
        "url",
        "title",
        "published_at",
        "summary",
        "content_html",
        "author",
        "categories",
        "image_url",
    }
)


def parse_timestamp(value: object, field_name: str = "published_at") -> datetime:
    """An ISO 8601 time with a UTC offset, converted to UTC; InvalidPost otherwise."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidPost(
            field_name, "required: an ISO 8601 time such as 2024-07-14T08:00:00+02:00"
        )
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidPost(
            field_name, f"{value!r} is not an ISO 8601 time such as 2024-07-14T08:00:00+02:00"
        ) from None
    if parsed.tzinfo is None:
        raise InvalidPost(
            field_name, "needs a UTC offset (e.g. +02:00 or Z) so the time is not ambiguous"
        )
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+14:00 is before the first UTC day
        raise InvalidPost(field_name, f"{value!r} is out of range") from None


def _text(data: Mapping[str, Any], name: str, *, required: bool, limit: int) -> str:
    """A string field, checked for type, presence and length."""
    value = data.get(name)
    if value is None:
        if required:
            raise InvalidPost(name, "required")
        return ""
    if not isinstance(value, str):
        raise InvalidPost(name, "must be a string")
    if required and not value.strip():
        raise InvalidPost(name, "must not be empty")
    if len(value) > limit:
        raise InvalidPost(name, f"longer than {limit} characters")
    return value


def post_input_from_json(data: object) -> PostInput:
    """Validate one pushed post (the API's JSON object) and clean it; InvalidPost on error."""
    if not isinstance(data, dict):
        raise InvalidPost("post", "each post must be a JSON object")
    unknown = sorted(set(data) - PUSH_FIELDS)
    if unknown:
        raise InvalidPost(
            unknown[0], f"unknown field; accepted fields are {', '.join(sorted(PUSH_FIELDS))}"
        )
    guid = _text(data, "guid", required=True, limit=GUID_MAX)
    url = _text(data, "url", required=True, limit=LINK_MAX)
    if not is_http_url(url.strip()):
        raise InvalidPost("url", "must be an absolute http:// or https:// URL")
    title = _text(data, "title", required=True, limit=10_000)
    published_at = parse_timestamp(data.get("published_at"))
    summary = _text(data, "summary", required=False, limit=100_000)
    content_html = _text(data, "content_html", required=False, limit=2_000_000)
    author = _text(data, "author", required=False, limit=AUTHOR_MAX)
    image_url = _text(data, "image_url", required=False, limit=LINK_MAX)
    if image_url.strip() and not is_http_url(image_url.strip()):
        raise InvalidPost("image_url", "must be an absolute http:// or https:// URL")
    categories = data.get("categories") or []
    if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
        raise InvalidPost("categories", "must be a list of strings")
    if len(categories) > CATEGORIES_MAX:
        raise InvalidPost("categories", f"at most {CATEGORIES_MAX} categories")
    item = make_post_input(
        guid=guid,
        link=url,
        title=title,
        published_at=published_at,
        summary_html=summary,
        content_html=content_html,
        author=author,
        categories=categories,
        image_url=image_url,
    )
    if not item.title:
        raise InvalidPost("title", "has no text once HTML is removed")
    return item
