"""An issue as the CLI, the API and the console show it: a small typed summary of its row."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from newsletter.store.models import Frequency, Issue, IssueStatus, NewsletterKind


@dataclass(frozen=True)
class IssueSummary:
    """One issue; ``to_json()`` is the API's ``issue`` object (times as ISO 8601 strings)."""

    id: int
    newsletter_id: int
    newsletter: str | None
    kind: str
    status: str
    reason: str
    frequency: str | None
    subject: str
    preheader: str
    post_ids: list[int]
    window_start: datetime | None
    window_end: datetime | None
    schedule_id: int | None
    send_at: datetime | None
    local_send_time: str | None
    held: bool
    total: int
    created_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        """The summary as plain JSON-able values."""
        return {
            key: value.isoformat() if isinstance(value, datetime) else value
            for key, value in asdict(self).items()
        }


def describe(issue: Issue) -> IssueSummary:
    """The summary of an issue row."""
    return IssueSummary(
        id=issue.id,
        newsletter_id=issue.newsletter_id,
        newsletter=issue.newsletter.slug if issue.newsletter is not None else None,
        kind=NewsletterKind(issue.kind).value,
        status=IssueStatus(issue.status).value,
        reason=issue.status_reason,
        frequency=Frequency(issue.frequency).value if issue.frequency else None,
        subject=issue.subject,
        preheader=issue.preheader,
        post_ids=list(issue.post_ids or []),
        window_start=issue.window_start,
        window_end=issue.window_end,
        schedule_id=issue.schedule_id,
        send_at=issue.send_at,
        local_send_time=issue.local_send_time or None,
        held=issue.held,
        total=issue.total,
        created_at=issue.created_at,
        started_at=issue.started_at,
        finished_at=issue.finished_at,
    )
