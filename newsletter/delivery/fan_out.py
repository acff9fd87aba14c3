"""Fan-out and the pump: from an issue to queued deliveries, and from those to batches.

One delivery row per (issue, reader) is the outbox record, and the database decides "exactly
once":

* **Fan-out** streams the eligible readers of an issue by keyset pagination up to the snapshot of
  the highest subscriber id, with SQLAlchemy Core (never ORM objects, never the whole list), and
  inserts ``queued`` deliveries (``ON CONFLICT DO NOTHING``: a rerun adds nothing twice).
* **The pump** hands due, un-enqueued deliveries to ``send_batch`` tasks, keeping at most
  ``send_inflight_batches`` batches of an issue in the broker (listmonk's pull model: a rate-limited
  send never floods the queue, and pause/resume is a status change). Fan-out, every finished
  batch and beat's tick top it up; local-time cohorts become due through it.
* **Sending** a batch (:mod:`newsletter.delivery.batches`) claims its rows atomically, re-checks
  each reader, sends over the reused connection and records each mail before the next one
  (:mod:`newsletter.delivery.sent_marks`).
* **Recovery** of a send whose worker died is :mod:`newsletter.delivery.recovery`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.orm import Session

from newsletter.issues.local_time import local_due_at
from newsletter.issues.queue import TaskQueue
from newsletter.issues.status import finish_if_done, issue_row, issue_status, update_issue
from newsletter.readers.addresses import email_hash
from newsletter.readers.eligibility import eligible_clause, suppressed_hashes
from newsletter.settings import Settings
from newsletter.store.db import get_sessionmaker, utcnow
from newsletter.store.models import (
    IssueStatus,
)
from newsletter.store.queries import (
    DELIVERIES,
    ISSUES,
    QUEUED,
    SUBSCRIBERS,
    SUBSCRIPTIONS,
    UNFINISHED,
    chunks,
    insert_ignore,
)

log = logging.getLogger(__name__)

FANOUT_PAGE = 1000


def advance(
    settings: Settings, issue_id: int, queue: TaskQueue, now: datetime | None = None
) -> None:
    """Run the fan-out of a sending issue if nobody else runs it, else just top up the pump."""
    factory = get_sessionmaker(settings.database_url)
    with factory() as session:
        if _claim_fanout(session, settings, issue_id, now or utcnow()):
            session.commit()
            fan_out(session, settings, issue_id, queue)
        else:
            session.commit()
            pump(session, settings, issue_id, queue)
            finish_if_done(session, issue_id)


def _claim_fanout(session: Session, settings: Settings, issue_id: int, now: datetime) -> bool:
    """Take the fan-out lease of an issue (free, or its holder silent for a lease)."""
    stale = now - timedelta(seconds=settings.delivery_lease_seconds)
    result = session.execute(
        update_issue()
        .where(
            ISSUES.c.id == issue_id,
            ISSUES.c.status.in_([IssueStatus.SENDING.value, IssueStatus.PAUSED.value]),
            ISSUES.c.fanout_finished_at.is_(None),
            or_(ISSUES.c.fanout_claimed_at.is_(None), ISSUES.c.fanout_claimed_at < stale),
        )
        .values(fanout_claimed_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def fan_out(session: Session, settings: Settings, issue_id: int, queue: TaskQueue) -> int:
    """Create the queued deliveries of an issue page by page; returns how many were added.

    Resumable: it continues after ``last_subscriber_id`` and a rerun inserts nothing twice.
    """
    issue = issue_row(session, issue_id)
    if issue is None:
        return 0
    max_id = _snapshot_highest_reader(session, issue)
    last = issue.last_subscriber_id or 0
    due_at = _DueTimes(issue)
    added = 0
    analyzed_at = 0  # rows added when the statistics were last refreshed
    while True:
        status = issue_status(session, issue_id)
        if status not in (IssueStatus.SENDING.value, IssueStatus.PAUSED.value):
            session.commit()
            return added  # cancelled (or failed) meanwhile: stop creating rows
        now = utcnow()
        page_size = max(FANOUT_PAGE, settings.batch_size)
        rows = _eligible_page(session, issue, last, max_id, page_size, now)
        if not rows:
            break
        blocked = suppressed_hashes(session, (email_hash(r.email_key) for r in rows))
        page = [
            (sid, due_at(zone))
            for sid, key, zone in rows
            if not (blocked and email_hash(key) in blocked)
        ]
        added += _insert_deliveries(session, issue_id, page, now)
        last = rows[-1].subscriber_id
        session.execute(
            update_issue()
            .where(ISSUES.c.id == issue_id, ISSUES.c.last_subscriber_id < last)
            .values(last_subscriber_id=last, fanout_claimed_at=now)
        )
        session.commit()
        if added >= analyzed_at * 10:
            _analyze_deliveries(session)
            analyzed_at = max(1, added)
        if status == IssueStatus.SENDING.value:
            pump(session, settings, issue_id, queue)
    _finish_fan_out(session, issue_id, max_id)
    pump(session, settings, issue_id, queue)
    finish_if_done(session, issue_id)
    return added


def _snapshot_highest_reader(session: Session, issue: Any) -> int:
    """The highest subscriber id the send covers, fixed when the fan-out first runs.

    Readers who sign up while the issue goes out are not added halfway through a send.
    """
    if issue.max_subscriber_id:
        return int(issue.max_subscriber_id)
    max_id = session.scalar(select(func.max(SUBSCRIBERS.c.id))) or 0
    session.execute(update_issue().where(ISSUES.c.id == issue.id).values(max_subscriber_id=max_id))
    return int(max_id)


def _eligible_page(
    session: Session, issue: Any, after: int, max_id: int, limit: int, now: datetime
) -> Sequence[Any]:
    """The next readers of the issue by id (keyset pagination): id, email key, time zone."""
    frequency = None if issue.frequency is None else str(issue.frequency.value)
    return session.execute(
        select(SUBSCRIPTIONS.c.subscriber_id, SUBSCRIBERS.c.email_key, SUBSCRIBERS.c.timezone)
        .select_from(
            SUBSCRIPTIONS.join(SUBSCRIBERS, SUBSCRIBERS.c.id == SUBSCRIPTIONS.c.subscriber_id)
        )
        .where(
            eligible_clause(issue.newsletter_id, frequency, now),
            SUBSCRIPTIONS.c.subscriber_id > after,
            SUBSCRIPTIONS.c.subscriber_id <= max_id,
        )
        .order_by(SUBSCRIPTIONS.c.subscriber_id)
        .limit(limit)
    ).all()


class _DueTimes:
    """When each reader's delivery is due: at once, or at the issue's hour in their own zone."""

    def __init__(self, issue: Any) -> None:
        self.issue = issue
        self.now = issue.started_at or utcnow()
        self.by_zone: dict[str, datetime] = {}  # a page holds few zones: compute each once

    def __call__(self, zone: str) -> datetime:
        """The due time of a reader in ``zone``."""
        issue = self.issue
        if not (issue.local_send_time and issue.send_at is not None):
            return self.now
        due = self.by_zone.get(zone)
        if due is None:
            due = self.by_zone[zone] = local_due_at(
                issue.send_at, issue.local_send_time, zone, "UTC"
            )
        return due


def _finish_fan_out(session: Session, issue_id: int, max_id: int) -> None:
    """Record that every reader has a delivery row, and how many there are."""
    total = session.scalar(
        select(func.count()).select_from(DELIVERIES).where(DELIVERIES.c.issue_id == issue_id)
    )
    session.execute(
        update_issue()
        .where(ISSUES.c.id == issue_id)
        .values(fanout_finished_at=utcnow(), total=total or 0, last_subscriber_id=max_id)
    )
    session.commit()


def _room_in_flight(session: Session, settings: Settings, issue_id: int, now: datetime) -> int:
    """How many more deliveries of the issue may be handed to the broker now.

    At most ``send_inflight_batches`` batches an issue (listmonk's pull model); rows enqueued
    longer than a lease ago count as lost, not in flight.
    """
    fresh = now - timedelta(seconds=settings.delivery_lease_seconds)
    in_flight = session.scalar(
        select(func.count())
        .select_from(DELIVERIES)
        .where(
            DELIVERIES.c.issue_id == issue_id,
            DELIVERIES.c.status.in_([s.value for s in UNFINISHED]),
            DELIVERIES.c.enqueued_at >= fresh,
        )
    )
    return max(1, settings.send_inflight_batches) * settings.batch_size - (in_flight or 0)


# The fan-out's page on PostgreSQL: two array parameters instead of a VALUES list of ~9,000
# placeholders, which psycopg would parse again for every page (most of a fan-out's CPU).
# The constants are the model's defaults for a new delivery (see models.Delivery).
_PG_INSERT_DELIVERIES = text(
    """
    INSERT INTO deliveries (issue_id, subscriber_id, status, due_at, created_at, attempts,
                            smtp_response, message_id, claimed_by)
    SELECT :issue_id, page.subscriber_id, 'queued', page.due_at, :now, 0, '', '', ''
      FROM unnest(CAST(:subscriber_ids AS BIGINT[]), CAST(:due_ats AS TIMESTAMPTZ[]))
           AS page (subscriber_id, due_at)
        ON CONFLICT DO NOTHING
    RETURNING id
    """
)


def _insert_deliveries(
    session: Session, issue_id: int, page: list[tuple[int, datetime]], now: datetime
) -> int:
    """Queue a delivery per (subscriber id, due at) unless one exists; how many were new."""
    if not page:
        return 0
    if session.get_bind().dialect.name == "postgresql":
        result = session.execute(
            _PG_INSERT_DELIVERIES,
            {
                "issue_id": issue_id,
                "now": now,
                "subscriber_ids": [sid for sid, _ in page],
                "due_ats": [due for _, due in page],
            },
        )
        return len(result.all())
    rows = [
        {
            "issue_id": issue_id,
            "subscriber_id": sid,
            "status": QUEUED.value,
            "due_at": due,
            "created_at": now,
        }
        for sid, due in page
    ]
    return insert_ignore(session, DELIVERIES, rows, count=True)


def _analyze_deliveries(session: Session) -> None:
    """Refresh PostgreSQL's statistics of the deliveries table while a fan-out fills it.

    Until autovacuum gets to it (a minute or more), the planner knows nothing of the new issue's
    rows and estimates "a couple" for ``issue_id = … AND status = 'queued'``: every batch's
    claim then walks all the issue's queued rows through that index instead of looking up its
    ids by primary key (0.5 s a batch at 100,000 readers). Run when the issue's rows have grown
    tenfold (1,000, 10,000, 100,000 …), so a few times per send; ANALYZE reads a sample of at
    most 30,000 rows (tens of milliseconds). Without the privilege PostgreSQL only warns.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    session.execute(text("ANALYZE deliveries"))
    session.commit()


def pump(
    session: Session,
    settings: Settings,
    issue_id: int,
    queue: TaskQueue,
    now: datetime | None = None,
) -> int:
    """Enqueue batches of due, un-enqueued deliveries up to the in-flight window; returns count."""
    now = now or utcnow()
    if issue_status(session, issue_id) != IssueStatus.SENDING.value:
        session.commit()
        return 0
    size = settings.batch_size
    room = _room_in_flight(session, settings, issue_id, now)
    if room < size:
        session.commit()
        return 0
    pick = (
        select(DELIVERIES.c.id)
        .where(
            DELIVERIES.c.issue_id == issue_id,
            DELIVERIES.c.status == QUEUED.value,
            DELIVERIES.c.enqueued_at.is_(None),
            DELIVERIES.c.due_at <= now,
        )
        .limit(room)
        .with_for_update(skip_locked=True)
    )
    ids = list(
        session.scalars(
            update(DELIVERIES)
            .where(DELIVERIES.c.id.in_(pick.scalar_subquery()))
            .values(enqueued_at=now)
            .returning(DELIVERIES.c.id)
        )
    )
    session.commit()  # enqueue only after the commit
    ids.sort()
    batches = list(chunks(ids, size))
    for batch in batches:
        queue.send_batch(issue_id, batch)
    return len(batches)
