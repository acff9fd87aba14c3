"""What the console's dashboard shows, read from the database: one function per panel.

Subscriptions per newsletter and their last 30 days, confirmations and unsubscribes per day
(UTC days), the last sends with their delivery counts, what is scheduled next, and feed health.
Each panel is one or two statements (the schedules' next times are computed from their cron);
the days are counted from the month's confirmations and departures, not by scanning every
subscription once per day, so the page stays fast on a laptop with a large list.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from newsletter.content.feeds import list_feeds
from newsletter.issues.schedules import list_schedules, next_slots
from newsletter.store.db import utcnow
from newsletter.store.models import (
    Delivery,
    DeliveryStatus,
    Issue,
    IssueStatus,
    Newsletter,
    Schedule,
    Subscription,
    SubscriptionStatus,
)

DAYS = 30
LAST_SENDS = 10
NEXT_UP = 5


@dataclass(frozen=True)
class ListCounts:
    """One newsletter's subscriptions now and how they moved over the last :data:`DAYS`."""

    newsletter_id: int
    slug: str
    name: str
    confirmed: int
    pending: int
    confirmations: int
    unsubscribes: int

    @property
    def net(self) -> int:
        """Confirmations less unsubscribes over the period."""
        return self.confirmations - self.unsubscribes


@dataclass(frozen=True)
class DayCounts:
    """One UTC day, across every newsletter."""

    day: date
    confirmations: int
    unsubscribes: int
    active: int  # subscriptions confirmed and not left at the end of the day


@dataclass(frozen=True)
class SendRow:
    """One recent send and what became of its mails."""

    issue_id: int
    newsletter: str
    subject: str
    status: str
    started_at: datetime | None
    total: int
    delivered: int
    failed: int
    bounced: int
    queued: int


@dataclass(frozen=True)
class UpcomingRow:
    """A send due later: a schedule's next firing, or an issue scheduled for a time."""

    at: datetime
    newsletter: str
    what: str


@dataclass(frozen=True)
class FeedRow:
    """One feed and how its fetching goes."""

    url: str
    title: str
    enabled: bool
    last_fetched_at: datetime | None
    next_fetch_at: datetime | None
    error_count: int
    last_error: str

    @property
    def health(self) -> str:
        """``ok``, ``failing``, ``never fetched`` or ``disabled``."""
        if not self.enabled:
            return "disabled"
        if self.error_count:
            return "failing"
        return "ok" if self.last_fetched_at else "never fetched"


def day_starts(today: date, days: int = DAYS) -> list[datetime]:
    """Midnight UTC of each of the ``days`` days ending with ``today``, oldest first."""
    first = today - timedelta(days=days - 1)
    return [datetime.combine(first + timedelta(days=n), time(0), UTC) for n in range(days)]


def _count(condition: ColumnElement[bool]) -> Any:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def list_counts(session: Session, now: datetime | None = None) -> list[ListCounts]:
    """Each newsletter's confirmed and pending subscriptions, and its last 30 days."""
    since = day_starts((now or utcnow()).date())[0]
    s = Subscription
    rows = session.execute(
        select(
            Newsletter.id,
            Newsletter.slug,
            Newsletter.name,
            _count(s.status == SubscriptionStatus.ACTIVE),
            _count(s.status == SubscriptionStatus.PENDING),
            _count(s.confirmed_at >= since),
            _count(and_(s.status == SubscriptionStatus.UNSUBSCRIBED, s.unsubscribed_at >= since)),
        )
        .outerjoin(s, s.newsletter_id == Newsletter.id)
        .group_by(Newsletter.id, Newsletter.slug, Newsletter.name, Newsletter.position)
        .order_by(Newsletter.position, Newsletter.id)
    )
    return [
        ListCounts(int(list_id), slug, name, int(confirmed), int(pending), int(joined), int(left))
        for list_id, slug, name, confirmed, pending, joined, left in rows
    ]


def daily_counts(session: Session, now: datetime | None = None) -> list[DayCounts]:
    """Confirmations, unsubscribes and active subscriptions for each of the last 30 UTC days.

    A subscription was active at a moment when it had been confirmed by then and had not been
    left since (a later confirmation, after coming back, starts it again). Two statements: how
    many were active when the period began, and the confirmations and departures within it.
    """
    starts = day_starts((now or utcnow()).date())
    first, end = starts[0], starts[-1] + timedelta(days=1)
    s = Subscription
    confirmed, left = s.confirmed_at, s.unsubscribed_at
    active_at_first = session.scalar(
        select(func.count())
        .select_from(s)
        .where(confirmed < first, or_(left.is_(None), left < confirmed, left >= first))
    )
    moves = session.execute(
        select(confirmed, left).where(
            or_(and_(confirmed >= first, confirmed < end), and_(left >= first, left < end))
        )
    )
    index = {start.date(): n for n, start in enumerate(starts)}
    joined, departed, change = [0] * len(starts), [0] * len(starts), [0] * len(starts)
    for confirmed_at, left_at in moves:
        joined_day = index.get(confirmed_at.date()) if confirmed_at is not None else None
        if joined_day is not None:
            joined[joined_day] += 1
            change[joined_day] += 1
        if left_at is None or (left_day := index.get(left_at.date())) is None:
            continue
        departed[left_day] += 1
        if confirmed_at is not None and left_at >= confirmed_at:  # it left what it had joined
            change[left_day] -= 1
    days, active = [], int(active_at_first or 0)
    for n, start in enumerate(starts):
        active += change[n]
        days.append(DayCounts(start.date(), joined[n], departed[n], active))
    return days


def last_sends(session: Session, limit: int = LAST_SENDS) -> list[SendRow]:
    """The sends started most recently, with delivered / failed / bounced / still queued."""
    issues = list(
        session.execute(
            select(
                Issue.id,
                Newsletter.name,
                Issue.subject,
                Issue.status,
                Issue.started_at,
                Issue.total,
            )
            .join(Newsletter, Newsletter.id == Issue.newsletter_id)
            .where(Issue.started_at.is_not(None))
            .order_by(Issue.started_at.desc(), Issue.id.desc())
            .limit(limit)
        )
    )
    counts: dict[tuple[int, str], int] = {}
    if issues:
        for issue_id, status, count in session.execute(
            select(Delivery.issue_id, Delivery.status, func.count())
            .where(Delivery.issue_id.in_([row[0] for row in issues]))
            .group_by(Delivery.issue_id, Delivery.status)
        ):
            counts[(issue_id, DeliveryStatus(status).value)] = int(count)

    def of(issue_id: int, *statuses: DeliveryStatus) -> int:
        return sum(counts.get((issue_id, status.value), 0) for status in statuses)

    return [
        SendRow(
            issue_id=issue_id,
            newsletter=name,
            subject=subject,
            status=IssueStatus(status).value,
            started_at=started_at,
            total=total,
            delivered=of(issue_id, DeliveryStatus.SENT),
            failed=of(issue_id, DeliveryStatus.FAILED),
            bounced=of(issue_id, DeliveryStatus.BOUNCED),
            queued=of(issue_id, DeliveryStatus.QUEUED, DeliveryStatus.SENDING),
        )
        for issue_id, name, subject, status, started_at, total in issues
    ]


def _schedule_label(schedule: Schedule) -> str:
    return schedule.name or f"schedule {schedule.id} ({schedule.cron}, {schedule.timezone})"


def upcoming(
    session: Session, now: datetime | None = None, limit: int = NEXT_UP
) -> list[UpcomingRow]:
    """The next sends: each enabled schedule's next firing and issues scheduled for a time."""
    now = now or utcnow()
    rows: list[UpcomingRow] = []
    for schedule in list_schedules(session):
        if not schedule.enabled:
            continue
        try:
            slots = next_slots(schedule, now, count=1)
        except (ValueError, KeyError):
            continue  # a schedule that cannot be evaluated is reported by the tick's log
        rows.append(UpcomingRow(slots[0], schedule.newsletter.name, _schedule_label(schedule)))
    for issue_id, name, subject, send_at in session.execute(
        select(Issue.id, Newsletter.name, Issue.subject, Issue.send_at)
        .join(Newsletter, Newsletter.id == Issue.newsletter_id)
        .where(Issue.status == IssueStatus.SCHEDULED, Issue.send_at.is_not(None))
        .order_by(Issue.send_at)
        .limit(limit)
    ):
        if send_at is not None:  # the query asks for it; this tells the type checker too
            rows.append(
                UpcomingRow(send_at, name, f"issue {issue_id}: {subject or '(no subject yet)'}")
            )
    return sorted(rows, key=lambda row: row.at)[:limit]


def feed_health(session: Session) -> list[FeedRow]:
    """Every feed with its last fetch, next fetch and errors."""
    return [
        FeedRow(
            url=feed.url,
            title=feed.title,
            enabled=feed.enabled,
            last_fetched_at=feed.last_fetched_at,
            next_fetch_at=feed.next_fetch_at,
            error_count=feed.error_count,
            last_error=feed.last_error,
        )
        for feed in list_feeds(session)
    ]
