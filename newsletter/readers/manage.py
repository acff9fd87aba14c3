"""What an unsubscribe link lets its holder do: leave one list or all, pause, resubscribe."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from newsletter.readers.subscriptions import (
    PAUSE_WEEKS,
    RESUBSCRIBE_WINDOW,
    InvalidLink,
    SubscriptionError,
    in_scope,
    settle_status,
)
from newsletter.readers.suppression import is_suppressed
from newsletter.readers.tokens import (
    TokenError,
    read_manage_token,
)
from newsletter.settings import Settings
from newsletter.store.db import utcnow
from newsletter.store.models import (
    Frequency,
    Newsletter,
    NewsletterKind,
    Subscriber,
    SubscriberStatus,
    SubscriptionStatus,
)


@dataclass(frozen=True)
class ManageLink:
    """A verified preferences/unsubscribe link: the reader and, optionally, one list."""

    subscriber: Subscriber
    newsletter_id: int | None
    newsletter: Newsletter | None


def read_manage_link(session: Session, settings: Settings, token: str) -> ManageLink:
    """Verify a preferences or unsubscribe link, or raise :class:`InvalidLink`."""
    try:
        claim = read_manage_token(settings.secret_key, token)
    except TokenError as exc:
        raise InvalidLink(
            "This link is not valid. Please copy the whole link from one of our mails.", 400
        ) from exc
    subscriber = session.get(Subscriber, claim.subscriber_id)
    if subscriber is None or subscriber.token_version != claim.version:
        raise InvalidLink(
            "This link is no longer in use. Please use the link in a more recent mail from us.",
            404,
        )
    newsletter = (
        session.get(Newsletter, claim.newsletter_id) if claim.newsletter_id is not None else None
    )
    return ManageLink(subscriber, claim.newsletter_id, newsletter)


def unsubscribe(
    session: Session, subscriber: Subscriber, newsletter_id: int | None, now: datetime | None = None
) -> list[int]:
    """Leave one list (all with None) and return the ids left; leaving the last → unsubscribed."""
    now = now or utcnow()
    left: list[int] = []
    for sub in subscriber.subscriptions:
        if in_scope(sub, newsletter_id) and sub.status != SubscriptionStatus.UNSUBSCRIBED:
            sub.status = SubscriptionStatus.UNSUBSCRIBED
            sub.unsubscribed_at = now
            sub.paused_until = None
            left.append(sub.newsletter_id)
    if newsletter_id is None and subscriber.status != SubscriberStatus.BOUNCED:
        subscriber.status = SubscriberStatus.UNSUBSCRIBED
    else:
        settle_status(subscriber)
    session.flush()
    return left


def resubscribe(
    session: Session, subscriber: Subscriber, newsletter_id: int | None, now: datetime | None = None
) -> list[int]:
    """Undo a recent unsubscribe made through the same link (see RESUBSCRIBE_WINDOW)."""
    now = now or utcnow()
    if subscriber.status == SubscriberStatus.BOUNCED or is_suppressed(session, subscriber.email):
        return []
    candidates = [
        s
        for s in subscriber.subscriptions
        if in_scope(s, newsletter_id)
        and s.status == SubscriptionStatus.UNSUBSCRIBED
        and s.confirmed_at is not None  # only lists the reader had confirmed before
        and s.unsubscribed_at is not None
        and s.unsubscribed_at >= now - RESUBSCRIBE_WINDOW
    ]
    if newsletter_id is None and candidates:
        # The lists left together in the latest "leave all", not older departures.
        latest = max(s.unsubscribed_at for s in candidates if s.unsubscribed_at is not None)
        candidates = [
            s
            for s in candidates
            if s.unsubscribed_at is not None and latest - s.unsubscribed_at <= timedelta(seconds=2)
        ]
    for sub in candidates:
        sub.status = SubscriptionStatus.ACTIVE
        sub.unsubscribed_at = None
    if candidates:
        subscriber.status = SubscriberStatus.ACTIVE
    session.flush()
    return [s.newsletter_id for s in candidates]


def pause(
    session: Session,
    subscriber: Subscriber,
    newsletter_id: int | None,
    weeks: int,
    now: datetime | None = None,
) -> list[int]:
    """Pause active lists in scope for 2, 4 or 8 weeks; returns the paused ids."""
    if weeks not in PAUSE_WEEKS:
        raise SubscriptionError("You can pause for 2, 4 or 8 weeks.")
    until = (now or utcnow()) + timedelta(weeks=weeks)
    paused: list[int] = []
    for sub in subscriber.subscriptions:
        if in_scope(sub, newsletter_id) and sub.status == SubscriptionStatus.ACTIVE:
            sub.paused_until = until
            paused.append(sub.newsletter_id)
    session.flush()
    return paused


def switch_frequency(
    session: Session, subscriber: Subscriber, newsletter_id: int | None, frequency: Frequency
) -> list[int]:
    """Set the digest frequency of the active digest lists in scope; returns the changed ids."""
    changed: list[int] = []
    for sub in subscriber.subscriptions:
        if (
            in_scope(sub, newsletter_id)
            and sub.status == SubscriptionStatus.ACTIVE
            and sub.newsletter.kind == NewsletterKind.DIGEST
            and sub.frequency != frequency
        ):
            sub.frequency = frequency
            changed.append(sub.newsletter_id)
    session.flush()
    return changed
