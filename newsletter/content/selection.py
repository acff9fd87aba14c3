"""Which posts go into which digest issue, and which of them to which reader.

An issue's window runs from the previous digest of the same newsletter and frequency cohort to
now; its posts are the newest ``digest_max_posts`` in that window (filtered by the newsletter's
categories). Each reader then gets the issue's posts in their topics that the sent-posts ledger
says they have not had yet. The rendering of those posts lives in
:mod:`newsletter.issues.rendering`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import cached_property
from typing import Any

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from newsletter.content.sanitize import truncate_words
from newsletter.mail.headers import one_line
from newsletter.settings import Settings
from newsletter.store.models import (
    Frequency,
    Issue,
    IssueStatus,
    Newsletter,
    NewsletterKind,
    Post,
    SentPost,
    Subscriber,
    Subscription,
)
from newsletter.store.queries import one_of

log = logging.getLogger(__name__)

# Issues whose window counts as "already gone out" for the next digest of the cohort.
WINDOW_CLOSING_STATUSES = (IssueStatus.SENT, IssueStatus.SENDING, IssueStatus.PAUSED)
WEEKLY_LOOKBACK = timedelta(days=7)
SUBJECT_MAX_CHARS = 200
PREHEADER_MAX_CHARS = 140
# SQLite allows 999 bound parameters per statement; stay well below it.
_IN_CHUNK = 500

_subject_env = ImmutableSandboxedEnvironment(autoescape=False)


@dataclass(frozen=True)
class Reader:
    """One recipient of an issue, loaded in bulk per batch."""

    subscriber_id: int
    email: str
    name: str
    token_version: int
    timezone: str
    topics: tuple[str, ...]  # empty = all topics
    frequency: str | None
    sent_post_ids: frozenset[int]  # posts of this issue the reader already got in another one


@dataclass(frozen=True)
class PostView:
    """The fields of a post that templates and subject lines may use."""

    id: int
    title: str
    link: str
    summary: str
    author: str
    categories: tuple[str, ...]
    image_url: str
    published_at: datetime

    @cached_property
    def topic_keys(self) -> frozenset[str]:
        """Categories case-folded, for matching against readers' topics."""
        return frozenset(c.casefold() for c in self.categories)


def post_view(post: Post) -> PostView:
    """Copy a post row into a plain value (safe to cache across sessions)."""
    return PostView(
        id=post.id,
        title=post.title,
        link=post.link,
        summary=post.summary or "",
        author=post.author or "",
        categories=tuple(post.categories or ()),
        image_url=post.image_url or "",
        published_at=post.published_at,
    )


@dataclass(frozen=True)
class NewsletterView:
    """The fields of a newsletter that templates and subject lines may use."""

    id: int
    slug: str
    name: str
    kind: str
    subject_template: str
    categories: tuple[str, ...] = ()  # the newsletter's categories in its order; () = all


def newsletter_view(newsletter: Newsletter) -> NewsletterView:
    """Copy a newsletter row into a plain value."""
    return NewsletterView(
        id=newsletter.id,
        slug=newsletter.slug,
        name=newsletter.name,
        kind=NewsletterKind(newsletter.kind).value,
        subject_template=newsletter.subject_template or "",
        categories=tuple(c for c in newsletter.categories or () if c.strip()),
    )


# --- Planning an issue ---------------------------------------------------------------------------


def lookback(settings: Settings, frequency: Frequency | str | None) -> timedelta:
    """How far the first digest of a cohort looks back (a week for the weekly cohort)."""
    if frequency is not None and Frequency(frequency) is Frequency.WEEKLY:
        return WEEKLY_LOOKBACK
    return timedelta(hours=settings.digest_lookback_hours)


def previous_window_end(session: Session, issue: Issue) -> datetime | None:
    """Where the last digest of this newsletter and frequency cohort that went out ended."""
    query = select(Issue.window_end).where(
        Issue.newsletter_id == issue.newsletter_id,
        Issue.kind == NewsletterKind.DIGEST,
        Issue.status.in_(WINDOW_CLOSING_STATUSES),
        Issue.window_end.is_not(None),
    )
    if issue.frequency is None:
        query = query.where(Issue.frequency.is_(None))
    else:
        query = query.where(Issue.frequency == issue.frequency)
    if issue.id is not None:
        query = query.where(Issue.id != issue.id)
    return session.scalars(query.order_by(Issue.window_end.desc()).limit(1)).first()


def window_posts(
    session: Session,
    newsletter: Newsletter,
    start: datetime,
    end: datetime,
    *,
    limit: int,
    grace: timedelta,
) -> list[Post]:
    """The newest ``limit`` posts of the window (start, end] in the newsletter's categories.

    A post that a feed reports late (published before ``start`` but ingested after it) still
    counts, as long as it is no older than ``grace`` before the window: otherwise it would fall
    between two digests. The per-reader ledger keeps it from being sent twice.
    """
    published_in_window = and_(Post.published_at > start, Post.published_at <= end)
    ingested_late = and_(
        Post.created_at > start,
        Post.created_at <= end,
        Post.published_at > start - grace,
        Post.published_at <= end,
    )
    rows = session.scalars(
        select(Post)
        .where(Post.retracted_at.is_(None), or_(published_in_window, ingested_late))
        .order_by(Post.published_at.desc(), Post.id.desc())
    )
    wanted = {c.casefold() for c in newsletter.categories or ()}
    chosen: list[Post] = []
    for post in rows:
        if wanted and not wanted.intersection(c.casefold() for c in post.categories or ()):
            continue
        chosen.append(post)
        if len(chosen) >= limit:
            break
    return chosen


def plan_digest(session: Session, settings: Settings, issue: Issue, now: datetime) -> bool:
    """Fill a digest issue's window_start/window_end/post_ids/subject from the newsletter's posts
    since its previous digest for that frequency (look-back for the first). False = nothing new.
    """
    if NewsletterKind(issue.kind) is not NewsletterKind.DIGEST:
        raise ValueError(f"issue {issue.id} is a {issue.kind} issue, not a digest")
    newsletter = session.get(Newsletter, issue.newsletter_id)
    if newsletter is None:
        raise ValueError(f"issue {issue.id} belongs to no newsletter")
    span = lookback(settings, issue.frequency)
    start = previous_window_end(session, issue) or (now - span)
    posts = window_posts(
        session, newsletter, start, now, limit=max(1, settings.digest_max_posts), grace=span
    )
    issue.window_start = start
    issue.window_end = now
    issue.post_ids = [post.id for post in posts]
    if not posts:
        return False
    views = [post_view(post) for post in posts]
    issue.subject = digest_subject(
        newsletter_view(newsletter), views, now.date(), settings.site_name
    )
    return True


# --- Readers and their posts ---------------------------------------------------------------------


def load_readers(
    session: Session,
    issue: Issue,
    subscriber_ids: Sequence[int],
    *,
    only: ColumnElement[bool] | None = None,
) -> list[Reader]:
    """Bulk-load recipients of a batch (one query for subscribers, one for their ledger).

    ``only`` is a further condition on the subscriber and their subscription to the issue's
    newsletter (the sender passes "still eligible", saving a query a batch).
    """
    ids = list(dict.fromkeys(subscriber_ids))
    rows = _reader_rows(session, issue, ids, only)
    ledger = _ledger(session, ids, issue.post_ids or [])
    readers = []
    for sid in ids:
        if sid not in rows:
            continue  # deleted since the batch was cut
        email, name, version, tz, topics, frequency = rows[sid]
        readers.append(
            Reader(
                subscriber_id=sid,
                email=email,
                name=name or "",
                token_version=version or 0,
                timezone=tz or "UTC",
                topics=tuple(t for t in topics or () if t),
                frequency=Frequency(frequency).value if frequency is not None else None,
                sent_post_ids=frozenset(ledger.get(sid, ())),
            )
        )
    return readers


def _reader_rows(
    session: Session, issue: Issue, ids: list[int], only: ColumnElement[bool] | None
) -> dict[int, tuple[Any, ...]]:
    """Subscriber id to (email, name, token version, timezone, topics, frequency), by chunks."""

    rows: dict[int, tuple[Any, ...]] = {}
    for chunk in _chunks(ids):
        query = (
            select(
                Subscriber.id,
                Subscriber.email,
                Subscriber.name,
                Subscriber.token_version,
                Subscriber.timezone,
                Subscriber.topics,
                Subscription.frequency,
            )
            .outerjoin(
                Subscription,
                and_(
                    Subscription.subscriber_id == Subscriber.id,
                    Subscription.newsletter_id == issue.newsletter_id,
                ),
            )
            .where(one_of(session, Subscriber.id, chunk))
        )
        result = session.execute(query if only is None else query.where(only))
        for sid, email, name, version, tz, topics, frequency in result:
            rows[sid] = (email, name, version, tz, topics, frequency)
    return rows


def _ledger(
    session: Session, subscriber_ids: list[int], post_ids: Iterable[int]
) -> dict[int, set[int]]:
    """Which of these posts each subscriber already got (only the issue's posts are asked for)."""

    posts = list(post_ids)
    found: dict[int, set[int]] = {}
    if not posts or not subscriber_ids:
        return found
    for chunk in _chunks(subscriber_ids, max(50, _IN_CHUNK - len(posts))):
        result = session.execute(
            select(SentPost.subscriber_id, SentPost.post_id).where(
                one_of(session, SentPost.subscriber_id, chunk),
                one_of(session, SentPost.post_id, posts),
            )
        )
        for sid, pid in result:
            found.setdefault(sid, set()).add(pid)
    return found


def _chunks(values: list[int], size: int = _IN_CHUNK) -> Iterable[list[int]]:
    """Slices of at most ``size`` values, for IN (...) lists."""
    for i in range(0, len(values), max(1, size)):
        yield values[i : i + size]


def topic_keys(topics: Iterable[str]) -> frozenset[str]:
    """A reader's topics case-folded; empty means every topic."""
    return frozenset(t.casefold() for t in topics if t.strip())


def select_for_reader(
    posts: Sequence[PostView], topics: frozenset[str], sent_post_ids: frozenset[int]
) -> tuple[int, ...]:
    """Indexes of the posts this reader gets: in their topics and not already sent to them."""
    return tuple(
        i
        for i, post in enumerate(posts)
        if post.id not in sent_post_ids and (not topics or not topics.isdisjoint(post.topic_keys))
    )


# --- Subject lines -------------------------------------------------------------------------------


def default_subject(top: PostView, count: int) -> str:
    """Like "Top story title, plus 2 more stories" (just the title when it is alone)."""
    if count <= 1:
        return top.title
    more = count - 1
    return f"{top.title}, plus {more} more {'story' if more == 1 else 'stories'}"


def digest_subject(
    newsletter: NewsletterView, posts: Sequence[PostView], day: date, site_name: str = ""
) -> str:
    """The subject for a digest whose top (newest) story is ``posts[0]``.

    ``newsletter.subject_template`` is a Jinja template with ``top``, ``count``, ``newsletter``,
    ``date`` and ``site_name``, e.g. ``{{ top.title }}{% if count > 1 %} (+{{ count - 1 }}){% endif
    %}``. It runs sandboxed; if it fails, the default subject is used and the error logged.
    """
    if not posts:
        return newsletter.name
    top, count = posts[0], len(posts)
    subject = ""
    if newsletter.subject_template.strip():
        try:
            subject = _subject_env.from_string(newsletter.subject_template).render(
                top=top, count=count, newsletter=newsletter, date=day, site_name=site_name
            )
        except TemplateError as exc:
            log.warning("subject template of %s failed: %s", newsletter.slug, exc)
    subject = clean_line(subject) or clean_line(default_subject(top, count)) or newsletter.name
    return truncate_words(subject, SUBJECT_MAX_CHARS)


def check_subject_template(text: str) -> str | None:
    """None when ``text`` is a usable subject template, else a message saying what is wrong."""
    sample = PostView(0, "Sample story", "https://example.com/", "", "", (), "", datetime.now())
    view = NewsletterView(0, "sample", "Sample", "digest", text)
    try:
        _subject_env.from_string(text).render(
            top=sample, count=3, newsletter=view, date=date.today(), site_name="Site"
        )
    except TemplateError as exc:
        return f"The subject template does not work: {exc}"
    return None


def digest_preheader(posts: Sequence[PostView]) -> str:
    """Inbox preview text: the other headlines, or the top story's summary when it is alone."""
    if not posts:
        return ""
    if len(posts) == 1:
        return truncate_words(clean_line(posts[0].summary), PREHEADER_MAX_CHARS)
    return truncate_words(
        "Also: " + " · ".join(clean_line(p.title) for p in posts[1:]), PREHEADER_MAX_CHARS
    )


def clean_line(value: str) -> str:
    """One line of plain text: line breaks and controls as spaces, format characters dropped."""
    return one_line(value)
