"""A reader's subscriptions: the shared rules of the reader's path, and its errors.

The steps of the path live beside this module: :mod:`~newsletter.readers.signup`,
:mod:`~newsletter.readers.confirmation`, :mod:`~newsletter.readers.manage` (unsubscribe, pause,
undo), :mod:`~newsletter.readers.preferences` and :mod:`~newsletter.readers.purge`.
None of them commits: the caller (a view, a task, a command) commits and only then enqueues mail,
so a worker never looks for rows that are not there yet.

Unsubscribed is a subscription status, not a suppression (:mod:`~newsletter.readers.suppression`
is for bounces, complaints and explicit "never mail me").
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.store.models import (
    Newsletter,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
)

PAUSE_WEEKS = (2, 4, 8)


NAME_MAX = 200


class SubscriptionError(ValueError):
    """A request the rules refuse; the message is safe to show the reader."""


class UnknownNewsletter(SubscriptionError):
    """A list id or slug that does not exist (or is not open to signups)."""


class InvalidLink(Exception):
    """A mailed link that cannot be used: forged (400), revoked (404) or expired (410)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status

    @property
    def expired(self) -> bool:
        """True for a link that was valid once and has run out."""
        return self.status == 410


def in_scope(sub: Subscription, newsletter_id: int | None) -> bool:
    return newsletter_id is None or sub.newsletter_id == newsletter_id


def has_active(subscriber: Subscriber) -> bool:
    return any(s.status == SubscriptionStatus.ACTIVE for s in subscriber.subscriptions)


def settle_status(subscriber: Subscriber) -> None:
    """Derive the reader's overall status from their subscriptions after a change."""
    if subscriber.status == SubscriberStatus.BOUNCED:
        return
    if has_active(subscriber):
        subscriber.status = SubscriberStatus.ACTIVE
    elif subscriber.status == SubscriberStatus.ACTIVE or not any(
        s.status == SubscriptionStatus.PENDING for s in subscriber.subscriptions
    ):
        subscriber.status = SubscriberStatus.UNSUBSCRIBED


def subscription_to(
    session: Session,
    subscriber: Subscriber,
    current: dict[int, Subscription],
    newsletter: Newsletter,
    now: datetime,
) -> Subscription:
    """The reader's subscription row for a list, created (at its default frequency) if new."""
    sub = current.get(newsletter.id)
    if sub is None:
        sub = Subscription(
            subscriber_id=subscriber.id,
            newsletter_id=newsletter.id,
            frequency=newsletter.default_frequency,
            created_at=now,
        )
        session.add(sub)
        subscriber.subscriptions.append(sub)
        current[newsletter.id] = sub
    return sub


def clean_name(raw: str) -> str:
    """A display name: trimmed, single-spaced, no control characters, bounded."""
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in raw):
        raise SubscriptionError("Your name contains characters that are not allowed.")
    name = " ".join(raw.split())
    if len(name) > NAME_MAX:
        raise SubscriptionError(f"Please keep your name under {NAME_MAX} characters.")
    return name


def subscriptions_of(
    session: Session, subscriber_id: int
) -> Sequence[tuple[Subscription, Newsletter]]:
    """A reader's subscriptions with their lists, in list order (for pages and mails)."""
    rows = session.execute(
        select(Subscription, Newsletter)
        .join(Newsletter, Newsletter.id == Subscription.newsletter_id)
        .where(Subscription.subscriber_id == subscriber_id)
        .order_by(Newsletter.position, Newsletter.id)
    )
    return [(sub, newsletter) for sub, newsletter in rows]
