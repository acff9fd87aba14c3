"""Recovery of sends in progress, run by beat's tick: stale claims, lost tasks, dead fan-outs.

Rows left in ``sending`` by a worker that died (lease expired) go back to ``queued``; rows whose
task never ran are enqueued again; a dead fan-out is restarted; every pump is topped up.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import (
    select,
    update,
)
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from newsletter.delivery.fan_out import pump
from newsletter.issues.queue import TaskQueue
from newsletter.issues.status import finish_if_done
from newsletter.settings import Settings
from newsletter.store.db import get_sessionmaker, utcnow
from newsletter.store.models import (
    IssueStatus,
)
from newsletter.store.queries import DELIVERIES, ISSUES, QUEUED, SENDING, SKIPPED

log = logging.getLogger(__name__)


def maintain(settings: Settings, queue: TaskQueue, now: datetime | None = None) -> dict[str, int]:
    """Recover every send in progress: stale claims, lost tasks, dead fan-outs; top up pumps."""
    now = now or utcnow()
    lease = timedelta(seconds=settings.delivery_lease_seconds)
    report = dict.fromkeys(("recovered", "reenqueued", "fanouts", "batches", "finished"), 0)
    factory = get_sessionmaker(settings.database_url)
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
