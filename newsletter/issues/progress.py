"""How far a send has come: deliveries by status, the recent rate and an ETA, readable mid-send.

The CLI's ``issues show`` and ``--wait``, the API's ``GET /issues/<id>`` and the console read the
same :class:`Progress`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsletter.issues.lifecycle import get_issue
from newsletter.issues.status import status_counts
from newsletter.store.db import utcnow
from newsletter.store.models import DeliveryStatus, Issue, IssueStatus
from newsletter.store.queries import DELIVERIES

# The rate is measured over the last minute of sending (or since the start, if later).
RATE_WINDOW = timedelta(seconds=60)
FINAL = (IssueStatus.SENT, IssueStatus.CANCELLED, IssueStatus.FAILED, IssueStatus.SKIPPED)


@dataclass(frozen=True)
class Progress:
    """Where one send stands; ``to_json()`` is the API's ``progress`` object."""

    issue_id: int
    status: str
    reason: str
    total: int
    fanout_complete: bool
    queued: int
    waiting: int  # queued, but their local time has not come yet
    next_due_at: str | None
    sending: int
    sent: int
    failed: int
    bounced: int
    skipped: int
    # The deliverability guard's counts (newsletter/inbound/guard.py): hard bounces, at SMTP
    # time (among ``failed``) or reported later (``bounced``), and spam complaints.
    hard_bounces: int
    complaints: int
    rate_per_second: float
    eta_seconds: int | None
    done: bool

    def to_json(self) -> dict[str, Any]:
        """The progress as plain JSON-able values."""
        return asdict(self)


def progress(session: Session, issue_id: int, now: datetime | None = None) -> Progress:
    """Counts by delivery status, rate over the last minute and an ETA, readable mid-send."""
    now = now or utcnow()
    issue = get_issue(session, issue_id)
    counts = status_counts(session, issue_id)
    queued = counts.get("queued", 0)
    waiting, next_due = _waiting(session, issue_id, now) if queued else (0, None)
    rate = _recent_rate(session, issue, now) if counts.get("sent") else 0.0
    to_go = queued - waiting + counts.get("sending", 0)
    eta = round(to_go / rate) if rate > 0 and to_go else None
    session.commit()
    fanned_out = issue.fanout_finished_at is not None
    return Progress(
        issue_id=issue.id,
        status=IssueStatus(issue.status).value,
        reason=issue.status_reason,
        total=issue.total if fanned_out else sum(counts.values()),
        fanout_complete=fanned_out,
        queued=queued,
        waiting=waiting,
        next_due_at=next_due.isoformat() if next_due else None,
        sending=counts.get("sending", 0),
        sent=counts.get("sent", 0),
        failed=counts.get("failed", 0),
        bounced=counts.get("bounced", 0),
        skipped=counts.get("skipped", 0),
        hard_bounces=issue.bounce_count,
        complaints=issue.complaint_count,
        rate_per_second=round(rate, 2),
        eta_seconds=eta,
        done=IssueStatus(issue.status) in FINAL,
    )


def _waiting(session: Session, issue_id: int, now: datetime) -> tuple[int, datetime | None]:
    """How many queued deliveries wait for their reader's local time, and the next one due."""
    later = (
        DELIVERIES.c.issue_id == issue_id,
        DELIVERIES.c.status == DeliveryStatus.QUEUED.value,
        DELIVERIES.c.due_at > now,
    )
    waiting = session.scalar(select(func.count()).select_from(DELIVERIES).where(*later)) or 0
    if not waiting:
        return 0, None
    return waiting, session.scalar(select(func.min(DELIVERIES.c.due_at)).where(*later))


def _recent_rate(session: Session, issue: Issue, now: datetime) -> float:
    """Mails sent per second over the last minute of a running (or paused) send."""
    if issue.status not in (IssueStatus.SENDING, IssueStatus.PAUSED):
        return 0.0
    since = now - RATE_WINDOW
    if issue.started_at is not None and issue.started_at > since:
        since = issue.started_at
    recent = (
        session.scalar(
            select(func.count())
            .select_from(DELIVERIES)
            .where(
                DELIVERIES.c.issue_id == issue.id,
                DELIVERIES.c.status == DeliveryStatus.SENT.value,
                DELIVERIES.c.sent_at >= since,
            )
        )
        or 0
    )
    return recent / max((now - since).total_seconds(), 1.0)
