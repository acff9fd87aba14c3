"""An issue's status as the send path reads and moves it, without ORM objects.

Every move is a conditional UPDATE (``only_from``), so two workers never both finish an issue and
an editor's pause or cancel is never overwritten by a batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Update,
    func,
    select,
    update,
)
from sqlalchemy.orm import Session

from newsletter.hooks import events
from newsletter.store.db import utcnow
from newsletter.store.models import (
    DeliveryStatus,
    IssueStatus,
)
from newsletter.store.queries import DELIVERIES, ISSUES, UNFINISHED


def issue_row(session: Session, issue_id: int) -> Any:
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


def finish_if_done(session: Session, issue_id: int, now: datetime | None = None) -> bool:
    """Mark a sending issue sent (or failed when nobody got it) once nothing is left to do."""
    issue = issue_row(session, issue_id)
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
        if done:
            events.issue_sent(session, issue_id, counts)
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
