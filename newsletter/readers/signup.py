"""Signup: a pending subscription and a consent record, never a change to an existing reader.

* A signup adds pending subscriptions for lists the reader is not on and a consent record; only
  the confirmation link activates them. The name typed into a signup form is kept with the
  consent record and becomes the reader's only when that signup is confirmed, and never replaces
  a name the reader has, so nobody can rename someone else through the public form.
* What a signup *does* is decided here and returned to the caller as a :class:`SignupAction`.
  For a public form only a worker calls :func:`subscribe` (through
  :mod:`newsletter.readers.signup_requests`): the web request validates and enqueues, so neither
  its answer nor its work depends on the address (no enumeration of who is subscribed). Staff's
  authenticated API (``POST /api/v1/subscribers``) calls it in the request: it may know.
* The daily cap on signup-triggered mails counts per inbox (``readers.addresses.inbox_hash``), so
  the many spellings of one inbox cannot multiply it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from newsletter.hooks import events
from newsletter.readers.addresses import email_key, inbox_hash
from newsletter.readers.consent import record_consent
from newsletter.readers.subscriptions import SubscriptionError, UnknownNewsletter, clean_name
from newsletter.readers.suppression import blocks_signup
from newsletter.readers.tokens import (
    ConfirmClaim,
    address_digest,
    make_confirm_token,
)
from newsletter.settings import Settings
from newsletter.store.db import utcnow
from newsletter.store.models import (
    ConsentRecord,
    Newsletter,
    SignupMailLog,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
)


class SignupAction(enum.StrEnum):
    """Which mail, if any, a signup leads to (never visible in the web response)."""

    CONFIRM = "confirm"  # new lists to confirm: send the confirmation mail
    ALREADY_SUBSCRIBED = "already_subscribed"  # confirmed on all of them: a short reminder
    NONE = "none"  # suppressed or bounced: send nothing


@dataclass(frozen=True)
class Signup:
    """One submitted signup form, already validated: a normalised address and list ids."""

    email: str
    newsletter_ids: tuple[int, ...]
    name: str = ""
    source: str = ""
    ip: str = ""
    user_agent: str = ""
    consent_text: str = ""
    consent_version: str = ""


@dataclass(frozen=True)
class SignupResult:
    """What :func:`subscribe` did."""

    action: SignupAction
    subscriber_id: int | None = None
    consent_id: int | None = None


def subscribe(
    session: Session, settings: Settings, signup: Signup, now: datetime | None = None
) -> SignupResult:
    """Record a signup and decide which mail it leads to. Call at the start of a transaction.

    A concurrent signup for the same new address can collide on the unique key; the whole
    transaction is then rolled back and retried once, when the other row is visible.
    """
    if not signup.newsletter_ids:
        raise SubscriptionError("Please choose at least one newsletter.")
    try:
        return _subscribe(session, settings, signup, now or utcnow())
    except IntegrityError:
        session.rollback()
        return _subscribe(session, settings, signup, now or utcnow())


def _subscribe(session: Session, settings: Settings, signup: Signup, now: datetime) -> SignupResult:
    """One attempt at :func:`subscribe` (IntegrityError when a concurrent signup won the race)."""
    if blocks_signup(session, signup.email):  # an erasure's entry does not (see suppression)
        return SignupResult(SignupAction.NONE)
    newsletters = _chosen_newsletters(session, signup)
    name = clean_name(signup.name)  # refused alike for every address, stored with the consent
    subscriber, created = _signup_subscriber(session, signup, now)
    if not created and subscriber.status == SubscriberStatus.BOUNCED:
        return SignupResult(SignupAction.NONE, subscriber.id)

    current = {s.newsletter_id: s for s in subscriber.subscriptions}
    to_confirm = [
        n
        for n in newsletters
        if n.id not in current or current[n.id].status != SubscriptionStatus.ACTIVE
    ]
    if not to_confirm:
        if subscriber.status == SubscriberStatus.ACTIVE:
            return SignupResult(SignupAction.ALREADY_SUBSCRIBED, subscriber.id)
        to_confirm = newsletters  # inconsistent leftovers: let the reader confirm again
    _add_pending_subscriptions(session, subscriber, to_confirm, current, now)
    record = record_consent(
        session,
        subscriber,
        newsletter_slugs=[n.slug for n in to_confirm],
        version=signup.consent_version or settings.consent_version,
        text=signup.consent_text,
        source=signup.source,
        ip=signup.ip,
        user_agent=signup.user_agent,
        now=now,
        name=name,
    )
    if created:
        events.subscriber_created(session, subscriber, [n.slug for n in to_confirm])
    session.flush()
    return SignupResult(SignupAction.CONFIRM, subscriber.id, record.id)


def _chosen_newsletters(session: Session, signup: Signup) -> list[Newsletter]:
    """The signup's lists in list order; UnknownNewsletter if any of them does not exist."""
    newsletters = list(
        session.scalars(
            select(Newsletter)
            .where(Newsletter.id.in_(signup.newsletter_ids))
            .order_by(Newsletter.position, Newsletter.id)
        )
    )
    if len(newsletters) != len(set(signup.newsletter_ids)):
        raise UnknownNewsletter("One of the chosen newsletters does not exist.")
    return newsletters


def _signup_subscriber(session: Session, signup: Signup, now: datetime) -> tuple[Subscriber, bool]:
    """The reader with the signup's address, created pending if new; and whether it was created."""
    key = email_key(signup.email)
    subscriber = session.scalar(select(Subscriber).where(Subscriber.email_key == key))
    if subscriber is not None:
        return subscriber, False
    subscriber = Subscriber(
        email=signup.email,
        email_key=key,
        status=SubscriberStatus.PENDING,
        created_at=now,
    )
    session.add(subscriber)
    session.flush()
    return subscriber, True


def _add_pending_subscriptions(
    session: Session,
    subscriber: Subscriber,
    newsletters: list[Newsletter],
    current: dict[int, Subscription],
    now: datetime,
) -> None:
    """Add a pending subscription for each of these lists the reader has none for yet."""
    for newsletter in newsletters:
        if newsletter.id not in current:
            session.add(
                Subscription(
                    subscriber_id=subscriber.id,
                    newsletter_id=newsletter.id,
                    status=SubscriptionStatus.PENDING,
                    frequency=newsletter.default_frequency,
                    created_at=now,
                )
            )


def confirm_token_for(settings: Settings, session: Session, consent_id: int) -> str | None:
    """A fresh confirmation token for a consent record (None when the record is gone)."""
    record = session.get(ConsentRecord, consent_id)
    if record is None:
        return None
    subscriber = session.get(Subscriber, record.subscriber_id)
    if subscriber is None:
        return None
    ids = session.scalars(
        select(Newsletter.id).where(Newsletter.slug.in_(record.newsletter_slugs))
    ).all()
    claim = ConfirmClaim(
        subscriber_id=subscriber.id,
        address=address_digest(subscriber.email_key),
        newsletter_ids=tuple(sorted(ids)),
        nonce=record.nonce,
    )
    return make_confirm_token(settings.secret_key, claim)


def signup_mails_sent(
    session: Session, settings: Settings, email: str, now: datetime | None = None
) -> int:
    """How many signup-triggered mails went to this address's inbox in the last 24 hours."""
    since = (now or utcnow()) - timedelta(days=1)
    key = inbox_hash(email, settings.inbox_strip_plus_tags)
    count = session.scalar(
        select(func.count(SignupMailLog.id)).where(
            SignupMailLog.email_hash == key, SignupMailLog.sent_at >= since
        )
    )
    return int(count or 0)


def log_signup_mail(
    session: Session, settings: Settings, email: str, kind: str, now: datetime | None = None
) -> None:
    """Count one signup-triggered mail towards the daily cap of the address's inbox."""
    # The column is named email_hash but holds the inbox hash: every spelling of one inbox
    # (case, +tags, Gmail's dots) shares one cap.
    key = inbox_hash(email, settings.inbox_strip_plus_tags)
    session.add(SignupMailLog(email_hash=key, kind=kind[:20], sent_at=now or utcnow()))
    session.flush()
