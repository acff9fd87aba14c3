"""Double opt-in: reading a confirmation link and activating what it covers, once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.hooks import events
from newsletter.readers.consent import mark_confirmed
from newsletter.readers.subscriptions import InvalidLink, has_active, subscription_to
from newsletter.readers.suppression import blocks_signup, lift_erasure
from newsletter.readers.tokens import (
    TokenError,
    address_digest,
    read_confirm_token,
)
from newsletter.settings import Settings
from newsletter.store.db import utcnow
from newsletter.store.models import (
    ConsentRecord,
    Newsletter,
    Subscriber,
    SubscriberStatus,
    SubscriptionStatus,
)


@dataclass(frozen=True)
class Confirmation:
    """A verified confirmation link: the reader, the consent record and the lists it covers."""

    subscriber: Subscriber
    consent: ConsentRecord
    newsletters: list[Newsletter]


@dataclass(frozen=True)
class ConfirmResult:
    """What :func:`confirm` did; ``first_time`` is False for a repeated click."""

    subscriber_id: int
    activated: tuple[int, ...]
    first_time: bool


def read_confirmation(session: Session, settings: Settings, token: str) -> Confirmation:
    """Verify a confirmation link against the database, or raise :class:`InvalidLink`."""
    max_age = settings.confirm_expiry_days * 86400
    try:
        claim = read_confirm_token(settings.secret_key, token, max_age)
    except TokenError as exc:
        if exc.expired:
            raise InvalidLink(
                "This confirmation link has expired. Please sign up again to get a new one.", 410
            ) from exc
        raise InvalidLink(
            "This confirmation link is not valid. Please copy the whole link from the mail, "
            "or sign up again.",
            400,
        ) from exc
    subscriber = session.get(Subscriber, claim.subscriber_id)
    record = session.scalar(select(ConsentRecord).where(ConsentRecord.nonce == claim.nonce))
    if (
        subscriber is None
        or record is None
        or record.subscriber_id != subscriber.id
        or claim.address != address_digest(subscriber.email_key)
    ):
        raise InvalidLink(
            "This confirmation link is not valid any more. Please sign up again.", 400
        )
    if subscriber.status == SubscriberStatus.BOUNCED or blocks_signup(session, subscriber.email):
        raise InvalidLink(
            "This address is on our do-not-mail list, so we cannot subscribe it. "
            "Please contact us if that is a mistake.",
            410,
        )
    newsletters = list(
        session.scalars(
            select(Newsletter)
            .where(Newsletter.id.in_(claim.newsletter_ids))
            .order_by(Newsletter.position, Newsletter.id)
        )
    )
    return Confirmation(subscriber, record, newsletters)


def confirm(
    session: Session,
    confirmation: Confirmation,
    *,
    ip: str = "",
    user_agent: str = "",
    now: datetime | None = None,
) -> ConfirmResult:
    """Activate the reader and the lists a confirmation link covers; a second click does nothing."""
    now = now or utcnow()
    subscriber = confirmation.subscriber
    if not mark_confirmed(confirmation.consent, ip=ip, user_agent=user_agent, now=now):
        return ConfirmResult(subscriber.id, (), first_time=False)
    # A reader erased before: this click is the new double opt-in, so mail may go there again.
    lift_erasure(session, subscriber.email)
    if not subscriber.name and confirmation.consent.name:
        # The name typed with the signup, now that the mailbox's owner confirmed it; a name the
        # reader already has is never replaced by one typed into a form.
        subscriber.name = confirmation.consent.name
    current = {s.newsletter_id: s for s in subscriber.subscriptions}
    activated: list[int] = []
    for newsletter in confirmation.newsletters:
        sub = subscription_to(session, subscriber, current, newsletter, now)
        if sub.status != SubscriptionStatus.ACTIVE:
            sub.status = SubscriptionStatus.ACTIVE
            sub.confirmed_at = now
            sub.unsubscribed_at = None
            sub.paused_until = None
            activated.append(newsletter.id)
    if activated or has_active(subscriber):
        subscriber.status = SubscriberStatus.ACTIVE
    if subscriber.confirmed_at is None:
        subscriber.confirmed_at = now
    if activated:
        events.subscriber_confirmed(session, subscriber, activated)
    session.flush()
    return ConfirmResult(subscriber.id, tuple(activated), first_time=True)
