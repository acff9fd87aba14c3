"""The editors' view of readers: search, filters, counts, keyset pages, and one reader's record.

Pages are keyset pages (``after`` = the last id of the previous page, never OFFSET), so page
10,000 costs what page 1 does. Every filter is served by an index (see ``store/models.py``):
a list's readers by ``(newsletter_id, status, subscriber_id)`` or ``(newsletter_id,
subscriber_id)``, a status by ``(status, id)``, and the search, a case-insensitive prefix of the
address or the name, by the pattern-ops indexes on ``email_key`` and ``name_key``. Counts are
index-only scans of the same indexes. The console, the API and ``newsletter subscribers list``
read the same plain dataclasses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, func, or_, select
from sqlalchemy.orm import Session

from newsletter.readers.addresses import email_hash
from newsletter.readers.consent import CONSENT_FIELDS
from newsletter.readers.subscriptions import UnknownNewsletter
from newsletter.store.models import (
    MAX_ID,
    ConsentRecord,
    Delivery,
    FeedbackEvent,
    Issue,
    Newsletter,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
    Suppression,
    as_dict,
)

MAX_PAGE = 500
SEARCH_MAX = 200
# A reader's page shows their latest mails and reports, not their whole history.
RECORD_DELIVERIES = 20
RECORD_EVENTS = 50


@dataclass(frozen=True)
class ReaderFilter:
    """Which readers: of one list (by slug), in a subscription or reader status, matching a
    search (a case-insensitive prefix of the address or the name). Empty means everyone."""

    newsletter_slug: str | None = None
    subscription_status: SubscriptionStatus | None = None
    status: SubscriberStatus | None = None
    search: str = ""


@dataclass(frozen=True)
class ReaderRow:
    """One reader in a list: who, where they stand, and their lists as ``slug:status``."""

    id: int
    email: str
    name: str
    status: str
    created_at: datetime
    confirmed_at: datetime | None
    newsletters: tuple[str, ...]


@dataclass(frozen=True)
class ReaderPage:
    """One page; ``next_after`` is the cursor of the next one (None on the last page)."""

    rows: tuple[ReaderRow, ...]
    next_after: int | None


@dataclass(frozen=True)
class ReaderCounts:
    """How many readers match, and how many would in each status (the other filters kept)."""

    total: int
    # Per reader status, for a filter without a list (empty with one).
    by_status: dict[str, int]
    # Per status on the filter's list (empty without a list).
    by_subscription_status: dict[str, int]


@dataclass(frozen=True)
class ReaderRecord:
    """A reader's page: the reader, their lists, consent ledger, latest mails and reports."""

    reader: dict[str, Any]
    subscriptions: list[dict[str, Any]]
    consent_records: list[dict[str, Any]]
    deliveries: list[dict[str, Any]]
    feedback_events: list[dict[str, Any]]
    suppression: dict[str, Any] | None


def _newsletter_id(session: Session, slug: str) -> int:
    """The id of a list by slug, or :class:`UnknownNewsletter`."""
    found = session.scalar(select(Newsletter.id).where(Newsletter.slug == slug))
    if found is None:
        raise UnknownNewsletter(f"no newsletter with slug {slug!r}")
    return int(found)


def _like_prefix(term: str) -> str:
    """A LIKE pattern matching values that start with ``term`` (its wildcards escaped)."""
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


def _reader_conditions(f: ReaderFilter) -> list[ColumnElement[bool]]:
    """The filter's clauses on ``subscribers`` alone: the reader's status and the search."""
    conditions: list[ColumnElement[bool]] = []
    if f.status is not None:
        conditions.append(Subscriber.status == f.status)
    term = " ".join(f.search.split())[:SEARCH_MAX]
    if term:
        conditions.append(
            or_(
                Subscriber.email_key.like(_like_prefix(term.casefold()), escape="\\"),
                Subscriber.name_key.like(_like_prefix(term.lower()), escape="\\"),
            )
        )
    return conditions


def _on_list(session: Session, f: ReaderFilter) -> list[ColumnElement[bool]]:
    """The filter's clauses on the reader's subscription row to its list (with a list)."""
    assert f.newsletter_slug is not None
    conditions = [Subscription.newsletter_id == _newsletter_id(session, f.newsletter_slug)]
    if f.subscription_status is not None:
        conditions.append(Subscription.status == f.subscription_status)
    return conditions


def _any_list_in(f: ReaderFilter) -> list[ColumnElement[bool]]:
    """Without a list, a subscription status means "on some list in that status"."""
    if f.subscription_status is None:
        return []
    return [
        select(Subscription.id)
        .where(
            Subscription.subscriber_id == Subscriber.id,
            Subscription.status == f.subscription_status,
        )
        .exists()
    ]


def list_readers(
    session: Session, f: ReaderFilter, *, after: int = 0, limit: int = 50
) -> ReaderPage:
    """One keyset page of the readers a filter matches, in id order."""
    limit = max(1, min(limit, MAX_PAGE))
    found = list(session.scalars(page_query(session, f, after, limit + 1)))
    more = len(found) > limit
    found = found[:limit]
    lists = _lists_of(session, [s.id for s in found])
    rows = tuple(
        ReaderRow(
            id=s.id,
            email=s.email,
            name=s.name,
            status=SubscriberStatus(s.status).value,
            created_at=s.created_at,
            confirmed_at=s.confirmed_at,
            newsletters=tuple(lists.get(s.id, ())),
        )
        for s in found
    )
    return ReaderPage(rows, rows[-1].id if more and rows else None)


def page_query(session: Session, f: ReaderFilter, after: int, limit: int) -> Select[Subscriber]:
    """The statement of one keyset page: ``id > after`` in id order, ``limit`` rows.

    With a list it is driven by the list's subscription rows (unique per reader and list, so
    nobody twice), a range of ``(newsletter_id, status, subscriber_id)`` read in order; without,
    by the readers' primary key or ``(status, id)``.
    """
    after = max(0, min(after, MAX_ID))
    if f.newsletter_slug is None:
        return (
            select(Subscriber)
            .where(Subscriber.id > after, *_reader_conditions(f), *_any_list_in(f))
            .order_by(Subscriber.id)
            .limit(limit)
        )
    return (
        select(Subscriber)
        .join(Subscription, Subscription.subscriber_id == Subscriber.id)
        # The bound on both sides of the join: a merge join then starts both scans at the cursor.
        .where(
            *_on_list(session, f),
            Subscription.subscriber_id > after,
            Subscriber.id > after,
            *_reader_conditions(f),
        )
        .order_by(Subscription.subscriber_id)
        .limit(limit)
    )


def _lists_of(session: Session, subscriber_ids: Sequence[int]) -> dict[int, list[str]]:
    """``slug:status`` of each reader's subscriptions, in list order, for one page of readers."""
    if not subscriber_ids:
        return {}
    rows = session.execute(
        select(Subscription.subscriber_id, Newsletter.slug, Subscription.status)
        .join(Newsletter, Newsletter.id == Subscription.newsletter_id)
        .where(Subscription.subscriber_id.in_(list(subscriber_ids)))
        .order_by(Newsletter.position, Newsletter.id)
    )
    out: dict[int, list[str]] = {}
    for sid, slug, status in rows:
        out.setdefault(sid, []).append(f"{slug}:{SubscriptionStatus(status).value}")
    return out


def count_readers(session: Session, f: ReaderFilter) -> ReaderCounts:
    """How many readers a filter matches, and a breakdown by status without the status filter:
    by the status on the list when the filter names one, else by the reader's status.

    One grouped count, whose sum (or one entry) is the total: with a list it reads only that
    list's rows of ``(newsletter_id, status, subscriber_id)`` (the readers' table only joined
    for a search or a reader status), without one the ``(status, id)`` index.
    """
    if f.newsletter_slug is None:
        query = (
            select(Subscriber.status, func.count())
            .where(*_reader_conditions(replace(f, status=None)), *_any_list_in(f))
            .group_by(Subscriber.status)
        )
        found = {SubscriberStatus(s).value: int(n) for s, n in session.execute(query)}
        by_status = {s.value: found.get(s.value, 0) for s in SubscriberStatus}
        total = by_status[f.status.value] if f.status is not None else sum(by_status.values())
        return ReaderCounts(total, by_status, {})
    readers = _reader_conditions(f)
    sub_query = (
        select(Subscription.status, func.count())
        .where(*_on_list(session, replace(f, subscription_status=None)))
        .group_by(Subscription.status)
    )
    if readers:
        sub_query = sub_query.join(Subscriber, Subscriber.id == Subscription.subscriber_id).where(
            *readers
        )
    found = {SubscriptionStatus(s).value: int(n) for s, n in session.execute(sub_query)}
    by_sub = {s.value: found.get(s.value, 0) for s in SubscriptionStatus}
    total = (
        by_sub[f.subscription_status.value]
        if f.subscription_status is not None
        else sum(by_sub.values())
    )
    return ReaderCounts(total, {}, by_sub)


def reader_record(session: Session, subscriber_id: int) -> ReaderRecord | None:
    """Everything an editor sees on one reader's page, or None when there is no such reader."""
    if not 1 <= subscriber_id <= MAX_ID:
        return None
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None:
        return None
    subscriptions = [
        {"newsletter": slug, "newsletter_name": name}
        | as_dict(
            sub,
            "status",
            "frequency",
            "paused_until",
            "created_at",
            "confirmed_at",
            "unsubscribed_at",
        )
        for sub, slug, name in session.execute(
            select(Subscription, Newsletter.slug, Newsletter.name)
            .join(Newsletter, Newsletter.id == Subscription.newsletter_id)
            .where(Subscription.subscriber_id == subscriber_id)
            .order_by(Newsletter.position, Newsletter.id)
        )
    ]
    consent = [
        as_dict(r, "id", *CONSENT_FIELDS)
        for r in session.scalars(
            select(ConsentRecord)
            .where(ConsentRecord.subscriber_id == subscriber_id)
            .order_by(ConsentRecord.signup_at.desc(), ConsentRecord.id.desc())
        )
    ]
    deliveries = [
        {"issue_id": issue_id, "subject": subject}
        | as_dict(d, "status", "attempts", "smtp_code", "smtp_response", "created_at", "sent_at")
        for d, issue_id, subject in session.execute(
            select(Delivery, Issue.id, Issue.subject)
            .join(Issue, Issue.id == Delivery.issue_id)
            .where(Delivery.subscriber_id == subscriber_id)
            .order_by(Delivery.id.desc())
            .limit(RECORD_DELIVERIES)
        )
    ]
    events = [
        as_dict(e, "issue_id", "kind", "status", "detail", "created_at")
        for e in session.scalars(
            select(FeedbackEvent)
            .where(FeedbackEvent.subscriber_id == subscriber_id)
            .order_by(FeedbackEvent.id.desc())
            .limit(RECORD_EVENTS)
        )
    ]
    suppression = session.scalar(
        select(Suppression).where(Suppression.email_hash == email_hash(subscriber.email))
    )
    return ReaderRecord(
        reader=as_dict(
            subscriber,
            "id",
            "email",
            "name",
            "status",
            "timezone",
            "topics",
            "created_at",
            "confirmed_at",
            "updated_at",
        ),
        subscriptions=subscriptions,
        consent_records=consent,
        deliveries=deliveries,
        feedback_events=events,
        suppression=(
            as_dict(suppression, "reason", "detail", "created_at")
            if suppression is not None
            else None
        ),
    )
