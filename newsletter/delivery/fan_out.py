"""The outbox engine: fan-out, the pump and recovery of a send in progress.

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
* **Recovery** (beat's tick): rows left in ``sending`` by a worker that died (lease expired) go
  back to ``queued``; rows whose task never ran are enqueued again; a dead fan-out is restarted.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from datetime import time as clock_time
from functools import lru_cache
from typing import Any, Protocol, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import (
    BigInteger,
    String,
    Table,
    Update,
    and_,
    any_,
    func,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from newsletter.readers.addresses import email_hash
from newsletter.settings import Settings
from newsletter.store.db import get_sessionmaker, utcnow
from newsletter.store.models import (
    Delivery,
    DeliveryStatus,
    Issue,
    IssueStatus,
    SentPost,
    Subscriber,
    SubscriberStatus,
    Subscription,
    Suppression,
)

log = logging.getLogger(__name__)

DELIVERIES = cast(Table, Delivery.__table__)
ISSUES = cast(Table, Issue.__table__)
SUBSCRIPTIONS = cast(Table, Subscription.__table__)
SUBSCRIBERS = cast(Table, Subscriber.__table__)
SUPPRESSIONS = cast(Table, Suppression.__table__)
SENT_POSTS = cast(Table, SentPost.__table__)

QUEUED, SENDING, SENT = DeliveryStatus.QUEUED, DeliveryStatus.SENDING, DeliveryStatus.SENT
FAILED, SKIPPED = DeliveryStatus.FAILED, DeliveryStatus.SKIPPED
UNFINISHED = (QUEUED, SENDING)

# The first zone on Earth to reach any wall-clock time (UTC+14; the POSIX sign is inverted).
EARLIEST_ZONE = ZoneInfo("Etc/GMT-14")
FANOUT_PAGE = 1000
IN_CHUNK = 500  # SQLite allows 999 bound parameters per statement
WORKER = f"{socket.gethostname()}:{os.getpid()}"


class TaskQueue(Protocol):
    """Where the engine enqueues work (Celery in production; tests may run it inline)."""

    def fan_out(self, issue_id: int) -> None:
        """Enqueue the fan-out (or, once it is done, a pump) of an issue."""
        ...

    def send_batch(self, issue_id: int, delivery_ids: list[int]) -> None:
        """Enqueue one batch of deliveries to send."""
        ...


@dataclass
class BatchResult:
    """What one run of :func:`send_batch` did; ``retry_ids`` go back to the broker later."""

    claimed: int = 0
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    retry_ids: list[int] = field(default_factory=list)
    retry_in: float = 0.0
    stopped: str = ""


# --- Who gets an issue ----------------------------------------------------------------------------


def eligible_clause(
    newsletter_id: int, frequency: str | None, now: datetime
) -> ColumnElement[bool]:
    """Subscription active on the newsletter (and cohort), reader active and not paused.

    Suppressions are checked separately (they are keyed on a hash computed in Python).
    """
    conditions = [
        SUBSCRIPTIONS.c.newsletter_id == newsletter_id,
        SUBSCRIPTIONS.c.status == "active",
        SUBSCRIBERS.c.status == SubscriberStatus.ACTIVE.value,
        or_(SUBSCRIPTIONS.c.paused_until.is_(None), SUBSCRIPTIONS.c.paused_until <= now),
    ]
    if frequency:
        conditions.append(SUBSCRIPTIONS.c.frequency == frequency)
    return and_(*conditions)


def suppressed_hashes(session: Session, hashes: Iterable[str]) -> set[str]:
    """Which of these address hashes are on the suppression list."""
    found: set[str] = set()
    for chunk in chunks(list(hashes), IN_CHUNK):
        found.update(
            session.scalars(
                select(SUPPRESSIONS.c.email_hash).where(
                    one_of(session, SUPPRESSIONS.c.email_hash, chunk, text=True)
                )
            )
        )
    return found


def one_of(
    session: Session, column: Any, values: Sequence[Any], *, text: bool = False
) -> ColumnElement[bool]:
    """``column IN (values)`` for a batch's ids (or ``text`` values).

    On PostgreSQL it is ``column = ANY(array)`` with ONE parameter: the SQL is the same for every
    batch, so SQLAlchemy and psycopg build and parse it once, where an IN list of 500 bound
    values costs ~10 ms of Python a statement. SQLite has no arrays: an IN list there (callers
    keep lists under its 999-parameter limit with :func:`chunks`).
    """
    if session.get_bind().dialect.name == "postgresql":
        item = String() if text else BigInteger()
        return cast(
            ColumnElement[bool], column == any_(literal(list(values), postgresql.ARRAY(item)))
        )
    return cast(ColumnElement[bool], column.in_(values))


def chunks(values: Sequence[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive slices of at most ``size`` items."""
    for i in range(0, len(values), max(1, size)):
        yield list(values[i : i + size])


@lru_cache(maxsize=1024)
def _zone(name: str) -> ZoneInfo | None:
    """A time zone by IANA name, or None when unknown."""
    try:
        return ZoneInfo(name) if name else None
    except (ZoneInfoNotFoundError, ValueError):
        return None


def local_due_at(send_at: datetime, local_time: str, zone_name: str, fallback: str) -> datetime:
    """When a reader in ``zone_name`` should get an issue sent at ``local_time`` on its day.

    The issue's day is the date of ``send_at`` in the earliest zone (UTC+14), so one issue spans
    about 26 hours of cohorts, from UTC+14 to UTC-12. Unknown zones use ``fallback``.
    """
    day = send_at.astimezone(EARLIEST_ZONE).date()
    hours, minutes = (int(part) for part in local_time.split(":", 1))
    zone = _zone(zone_name) or _zone(fallback) or UTC
    return datetime.combine(day, clock_time(hours, minutes), tzinfo=zone).astimezone(UTC)


# --- Small shared statements ---------------------------------------------------------------------


def insert_ignore(
    session: Session, table: Table, rows: list[dict[str, Any]], *, count: bool = False
) -> int:
    """INSERT many rows, skipping those that hit a unique key (PostgreSQL and SQLite).

    With ``count`` it returns how many rows were new (RETURNING), else 0.
    """
    if not rows:
        return 0
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        stmt: Any = postgresql.insert(table).on_conflict_do_nothing()
    elif dialect == "sqlite":
        stmt = sqlite.insert(table).on_conflict_do_nothing()
    else:  # pragma: no cover - only the two supported databases
        raise RuntimeError(f"unsupported database {dialect!r}")
    if not count:
        session.execute(stmt, rows)
        return 0
    key = next(iter(table.primary_key.columns))
    return len(session.execute(stmt.returning(key), rows).all())


def _issue_row(session: Session, issue_id: int) -> Any:
    """The columns of an issue the engine needs, without an ORM object."""
    return session.execute(
        select(
            ISSUES.c.id,
            ISSUES.c.status,
            ISSUES.c.newsletter_id,
            ISSUES.c.frequency,
            ISSUES.c.send_at,
            ISSUES.c.started_at,
            ISSUES.c.local_send_time,
            ISSUES.c.max_subscriber_id,
            ISSUES.c.last_subscriber_id,
            ISSUES.c.fanout_claimed_at,
            ISSUES.c.fanout_finished_at,
            ISSUES.c.attempt_count,
            ISSUES.c.error_count,
        ).where(ISSUES.c.id == issue_id)
    ).first()


def update_issue() -> Update:
    """UPDATE issues for bookkeeping; ``updated_at`` (the render cache's key) stays unchanged.

    Without this the column's onupdate would touch it on every counter or checkpoint update and
    every batch would render the issue again.
    """
    return update(ISSUES).values(updated_at=ISSUES.c.updated_at)


def issue_status(session: Session, issue_id: int) -> str | None:
    """The current status of an issue (as its string value)."""
    value = session.scalar(select(ISSUES.c.status).where(ISSUES.c.id == issue_id))
    return None if value is None else str(IssueStatus(value).value)


def set_issue_status(
    session: Session,
    issue_id: int,
    new: IssueStatus,
    reason: str,
    *,
    only_from: Sequence[IssueStatus],
    now: datetime | None = None,
) -> bool:
    """Move an issue to ``new`` if it is in one of ``only_from``; False when it was not."""
    values: dict[str, Any] = {"status": new.value, "status_reason": reason[:2000]}
    if new in (IssueStatus.SENT, IssueStatus.FAILED, IssueStatus.CANCELLED):
        values["finished_at"] = now or utcnow()
    result = session.execute(
        update_issue()
        .where(ISSUES.c.id == issue_id, ISSUES.c.status.in_([s.value for s in only_from]))
        .values(**values)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


# --- Fan-out --------------------------------------------------------------------------------------


def advance(
    settings: Settings, issue_id: int, queue: TaskQueue, now: datetime | None = None
) -> None:
    """Run the fan-out of a sending issue if nobody else runs it, else just top up the pump."""
    factory = _session_factory(settings)
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
    issue = _issue_row(session, issue_id)
    if issue is None:
        return 0
    max_id = issue.max_subscriber_id or session.scalar(select(func.max(SUBSCRIBERS.c.id))) or 0
    if not issue.max_subscriber_id:
        session.execute(
            update_issue().where(ISSUES.c.id == issue_id).values(max_subscriber_id=max_id)
        )
    last = issue.last_subscriber_id or 0
    frequency = None if issue.frequency is None else str(issue.frequency.value)
    base_due = issue.started_at or utcnow()
    due_cache: dict[str, datetime] = {}
    added = 0
    analyzed_at = 0  # rows added when the statistics were last refreshed
    while True:
        status = issue_status(session, issue_id)
        if status not in (IssueStatus.SENDING.value, IssueStatus.PAUSED.value):
            session.commit()
            return added  # cancelled (or failed) meanwhile: stop creating rows
        now = utcnow()
        rows = session.execute(
            select(SUBSCRIPTIONS.c.subscriber_id, SUBSCRIBERS.c.email_key, SUBSCRIBERS.c.timezone)
            .select_from(
                SUBSCRIPTIONS.join(SUBSCRIBERS, SUBSCRIBERS.c.id == SUBSCRIPTIONS.c.subscriber_id)
            )
            .where(
                eligible_clause(issue.newsletter_id, frequency, now),
                SUBSCRIPTIONS.c.subscriber_id > last,
                SUBSCRIPTIONS.c.subscriber_id <= max_id,
            )
            .order_by(SUBSCRIPTIONS.c.subscriber_id)
            .limit(max(FANOUT_PAGE, settings.batch_size))
        ).all()
        if not rows:
            break
        blocked = suppressed_hashes(session, (email_hash(r.email_key) for r in rows))
        page: list[tuple[int, datetime]] = []
        for sid, key, zone in rows:
            if blocked and email_hash(key) in blocked:
                continue
            due = base_due
            if issue.local_send_time and issue.send_at is not None:
                due = due_cache.get(zone) or due_cache.setdefault(
                    zone, local_due_at(issue.send_at, issue.local_send_time, zone, "UTC")
                )
            page.append((sid, due))
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
    total = session.scalar(
        select(func.count()).select_from(DELIVERIES).where(DELIVERIES.c.issue_id == issue_id)
    )
    session.execute(
        update_issue()
        .where(ISSUES.c.id == issue_id)
        .values(fanout_finished_at=utcnow(), total=total or 0, last_subscriber_id=max_id)
    )
    session.commit()
    pump(session, settings, issue_id, queue)
    finish_if_done(session, issue_id)
    return added


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


# --- The pump -------------------------------------------------------------------------------------


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
    room = max(1, settings.send_inflight_batches) * size - (in_flight or 0)
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


def finish_if_done(session: Session, issue_id: int, now: datetime | None = None) -> bool:
    """Mark a sending issue sent (or failed when nobody got it) once nothing is left to do."""
    issue = _issue_row(session, issue_id)
    if issue is None or issue.status != IssueStatus.SENDING or issue.fanout_finished_at is None:
        session.commit()
        return False
    left = session.scalar(
        select(DELIVERIES.c.id)
        .where(
            DELIVERIES.c.issue_id == issue_id,
            DELIVERIES.c.status.in_([s.value for s in UNFINISHED]),
        )
        .limit(1)
    )
    if left is not None:
        session.commit()
        return False
    counts = status_counts(session, issue_id)
    sent, failed = counts.get("sent", 0), counts.get("failed", 0) + counts.get("bounced", 0)
    summary = f"{sent} sent, {failed} failed, {counts.get('skipped', 0)} skipped"
    if failed and not sent:
        done = set_issue_status(
            session,
            issue_id,
            IssueStatus.FAILED,
            f"every delivery failed ({summary}); see the deliveries' SMTP answers",
            only_from=[IssueStatus.SENDING],
            now=now,
        )
    else:
        done = set_issue_status(
            session, issue_id, IssueStatus.SENT, summary, only_from=[IssueStatus.SENDING], now=now
        )
    session.commit()
    return done


def status_counts(session: Session, issue_id: int) -> dict[str, int]:
    """Deliveries of an issue by status, e.g. ``{"sent": 10, "queued": 3}``."""
    rows = session.execute(
        select(DELIVERIES.c.status, func.count())
        .where(DELIVERIES.c.issue_id == issue_id)
        .group_by(DELIVERIES.c.status)
    )
    return {DeliveryStatus(status).value: int(count) for status, count in rows}


# --- Recovery, run by beat's tick ----------------------------------------------------------------


def maintain(settings: Settings, queue: TaskQueue, now: datetime | None = None) -> dict[str, int]:
    """Recover every send in progress: stale claims, lost tasks, dead fan-outs; top up pumps."""
    now = now or utcnow()
    lease = timedelta(seconds=settings.delivery_lease_seconds)
    report = dict.fromkeys(("recovered", "reenqueued", "fanouts", "batches", "finished"), 0)
    factory = _session_factory(settings)
    with factory() as session:
        issues = session.execute(
            select(
                ISSUES.c.id,
                ISSUES.c.status,
                ISSUES.c.started_at,
                ISSUES.c.fanout_claimed_at,
                ISSUES.c.fanout_finished_at,
            ).where(ISSUES.c.status.in_([IssueStatus.SENDING.value, IssueStatus.PAUSED.value]))
        ).all()
        session.commit()
        for issue in issues:
            try:
                report["recovered"] += recover_stale_claims(session, issue.id, now - lease)
                report["reenqueued"] += forget_lost_tasks(session, issue.id, now - lease)
                session.commit()
                if issue.status != IssueStatus.SENDING:
                    continue
                if issue.fanout_finished_at is None:
                    heartbeat = issue.fanout_claimed_at or issue.started_at or now
                    if heartbeat < now - lease:
                        queue.fan_out(issue.id)
                        report["fanouts"] += 1
                    continue
                report["batches"] += pump(session, settings, issue.id, queue, now)
                report["finished"] += int(finish_if_done(session, issue.id, now))
            except SQLAlchemyError:
                session.rollback()
                log.exception("maintenance of issue %s failed; retrying at the next tick", issue.id)
        report["abandoned"] = settle_stopped_claims(session, now - lease)
        session.commit()
    return report


def settle_stopped_claims(session: Session, cutoff: datetime) -> int:
    """Rows a dead worker left in ``sending`` on an issue that was cancelled (or failed) since:
    nobody will send them; mark them skipped, saying the outcome is unknown."""
    stopped = select(ISSUES.c.id).where(
        ISSUES.c.status.in_([IssueStatus.CANCELLED.value, IssueStatus.FAILED.value])
    )
    result = session.execute(
        update(DELIVERIES)
        .where(
            DELIVERIES.c.issue_id.in_(stopped.scalar_subquery()),
            DELIVERIES.c.status == SENDING.value,
            DELIVERIES.c.claimed_at < cutoff,
        )
        .values(
            status=SKIPPED.value,
            claimed_by="",
            smtp_response="unknown: the worker stopped while sending and the issue was stopped",
        )
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def recover_stale_claims(session: Session, issue_id: int, cutoff: datetime) -> int:
    """Re-queue rows a dead worker left in ``sending`` (lease older than ``cutoff``)."""
    result = session.execute(
        update(DELIVERIES)
        .where(
            DELIVERIES.c.issue_id == issue_id,
            DELIVERIES.c.status == SENDING.value,
            DELIVERIES.c.claimed_at < cutoff,
        )
        .values(
            status=QUEUED.value,
            enqueued_at=None,
            claimed_by="",
            smtp_response="re-queued: the worker sending it stopped before recording an outcome",
        )
    )
    count = int(result.rowcount)  # type: ignore[attr-defined]
    if count:
        log.warning("issue %s: re-queued %d deliveries of a lost worker", issue_id, count)
    return count


def forget_lost_tasks(session: Session, issue_id: int, cutoff: datetime) -> int:
    """Make rows enqueued before ``cutoff`` but never claimed pumpable again (task lost)."""
    result = session.execute(
        update(DELIVERIES)
        .where(
            DELIVERIES.c.issue_id == issue_id,
            DELIVERIES.c.status == QUEUED.value,
            DELIVERIES.c.enqueued_at < cutoff,
        )
        .values(enqueued_at=None)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def _session_factory(settings: Settings) -> Callable[[], Session]:
    """Plain sessions on the shared engine."""
    return get_sessionmaker(settings.database_url)
