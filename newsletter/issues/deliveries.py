"""One issue's deliveries, reader by reader: status, attempts and the SMTP answer, a keyset
page at a time (``after`` = the last reader id of the page before, so page 1,000 of a send to a
million readers is a range scan of the ``(issue_id, subscriber_id)`` key, as page 1 is)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.store.models import MAX_ID, Delivery, DeliveryStatus, Subscriber


@dataclass(frozen=True)
class DeliveryRow:
    """The mail of one issue to one reader."""

    subscriber_id: int
    email: str
    status: str
    attempts: int
    smtp_code: int | None
    smtp_response: str
    due_at: datetime | None
    created_at: datetime
    sent_at: datetime | None


def list_deliveries(
    session: Session,
    issue_id: int,
    *,
    status: DeliveryStatus | None = None,
    after: int = 0,
    limit: int = 50,
) -> list[DeliveryRow]:
    """Up to ``limit`` deliveries of the issue to readers with an id above ``after``, in
    reader-id order, of one status if given."""
    query = (
        select(Delivery, Subscriber.email)
        .join(Subscriber, Subscriber.id == Delivery.subscriber_id)
        .where(Delivery.issue_id == issue_id, Delivery.subscriber_id > max(0, min(after, MAX_ID)))
        .order_by(Delivery.subscriber_id)
        .limit(limit)
    )
    if status is not None:
        query = query.where(Delivery.status == status)
    return [
        DeliveryRow(
            subscriber_id=d.subscriber_id,
            email=email,
            status=DeliveryStatus(d.status).value,
            attempts=d.attempts,
            smtp_code=d.smtp_code,
            smtp_response=d.smtp_response,
            due_at=d.due_at,
            created_at=d.created_at,
            sent_at=d.sent_at,
        )
        for d, email in session.execute(query)
    ]
