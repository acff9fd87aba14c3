"""Who may get an issue: an active subscription on the newsletter, an active reader, not paused,
and an address that is not on the suppression list."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import (
    and_,
    or_,
    select,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from newsletter.store.models import (
    SubscriberStatus,
)
from newsletter.store.queries import (
    IN_CHUNK,
    SUBSCRIBERS,
    SUBSCRIPTIONS,
    SUPPRESSIONS,
    chunks,
    one_of,
)


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
