"""Housekeeping: forget signups nobody confirmed, old entries of the signup mail log, and
the consent proof of readers erased long ago."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from newsletter.readers.erasure import purge_erased_consents
from newsletter.settings import Settings
from newsletter.store.db import utcnow
from newsletter.store.models import (
    ConsentRecord,
    SignupMailLog,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
)

# Signup-mail log rows are only needed for the per-day cap.
MAIL_LOG_KEEP = timedelta(days=2)


@dataclass(frozen=True)
class PurgeResult:
    """Rows removed by :func:`purge_pending`."""

    subscribers: int
    subscriptions: int
    consent_records: int
    mail_log: int
    erased_consents: int = 0


def purge_pending(session: Session, settings: Settings, now: datetime | None = None) -> PurgeResult:
    """Forget signups nobody confirmed within the confirmation expiry.

    Deletes pending readers (with their pending subscriptions and consent rows) whose last signup
    is older than the expiry, pending subscriptions of other readers past it, unconfirmed consent
    records past it (they are personal data held without consent) and old signup-mail log rows.
    A reader who signed up again recently keeps everything until that newer link expires too.
    Also drops the consent proof of readers erased past ``NEWSLETTER_ERASED_CONSENT_DAYS``.
    """
    now = now or utcnow()
    cutoff = now - timedelta(days=settings.confirm_expiry_days)
    recent_signup = select(ConsentRecord.subscriber_id).where(
        ConsentRecord.confirmed_at.is_(None), ConsentRecord.signup_at >= cutoff
    )
    stale_ids = list(
        session.scalars(
            select(Subscriber.id).where(
                Subscriber.status == SubscriberStatus.PENDING,
                Subscriber.confirmed_at.is_(None),
                Subscriber.created_at < cutoff,
                Subscriber.id.not_in(recent_signup),
            )
        )
    )
    subscribers, subscriptions, consent_records = _delete_readers(session, stale_ids)
    subscriptions += _count(
        session.execute(
            delete(Subscription).where(
                Subscription.status == SubscriptionStatus.PENDING,
                Subscription.created_at < cutoff,
                Subscription.subscriber_id.not_in(recent_signup),
            )
        )
    )
    consent_records += _count(
        session.execute(
            delete(ConsentRecord).where(
                ConsentRecord.confirmed_at.is_(None), ConsentRecord.signup_at < cutoff
            )
        )
    )
    mail_log = _count(
        session.execute(delete(SignupMailLog).where(SignupMailLog.sent_at < now - MAIL_LOG_KEEP))
    )
    erased = purge_erased_consents(session, settings, now)
    session.expire_all()
    return PurgeResult(subscribers, subscriptions, consent_records, mail_log, erased)


def _delete_readers(session: Session, subscriber_ids: list[int]) -> tuple[int, int, int]:
    """Delete readers, their subscriptions and consent records (chunked); how many of each."""
    subscribers = subscriptions = consent_records = 0
    for start in range(0, len(subscriber_ids), 500):
        chunk = subscriber_ids[start : start + 500]
        consent_records += _count(
            session.execute(delete(ConsentRecord).where(ConsentRecord.subscriber_id.in_(chunk)))
        )
        subscriptions += _count(
            session.execute(delete(Subscription).where(Subscription.subscriber_id.in_(chunk)))
        )
        subscribers += _count(session.execute(delete(Subscriber).where(Subscriber.id.in_(chunk))))
    return subscribers, subscriptions, consent_records


def _count(result: object) -> int:
    """Rows a bulk DELETE touched."""
    rowcount = getattr(result, "rowcount", 0)
    return int(rowcount or 0)
