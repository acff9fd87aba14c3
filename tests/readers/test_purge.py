"""Housekeeping: unconfirmed signups are forgotten after the confirmation expiry."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.readers.purge import purge_pending
from newsletter.readers.signup import (
    log_signup_mail,
    subscribe,
)
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
from tests.support.readers import (
    Lists,
    add_subscriber,
    signup_for,
    subs_of,
)


def test_purge_pending_forgets_unconfirmed_signups(
    db: Session, settings: Settings, lists: Lists
) -> None:
    now = utcnow()
    old = now - timedelta(days=settings.confirm_expiry_days + 1)
    stale = subscribe(db, settings, signup_for("stale@example.com", lists.daily.id), now=old)
    fresh = subscribe(db, settings, signup_for("fresh@example.com", lists.daily.id), now=now)
    # An old pending reader who signed up again yesterday keeps everything.
    again = subscribe(db, settings, signup_for("again@example.com", lists.daily.id), now=old)
    subscribe(db, settings, signup_for("again@example.com", lists.daily.id), now=now)
    active = add_subscriber(db, "active@example.com", SubscriberStatus.ACTIVE, [lists.daily])
    extra = subscribe(db, settings, signup_for("active@example.com", lists.offers.id), now=old)
    db.execute(
        Subscription.__table__.update()
        .where(Subscription.subscriber_id == active.id)
        .where(Subscription.newsletter_id == lists.offers.id)
        .values(created_at=old)
    )
    log_signup_mail(db, settings, "stale@example.com", "confirm", now=now - timedelta(days=3))
    db.commit()

    result = purge_pending(db, settings, now=now)
    db.commit()

    assert db.get(Subscriber, stale.subscriber_id) is None
    assert db.get(ConsentRecord, stale.consent_id) is None
    assert db.get(Subscriber, fresh.subscriber_id) is not None
    assert db.get(Subscriber, again.subscriber_id) is not None
    subs = subs_of(db, active.id)
    assert set(subs) == {lists.daily.id}  # the unconfirmed extra list is dropped
    assert subs[lists.daily.id].status == SubscriptionStatus.ACTIVE
    assert db.get(ConsentRecord, extra.consent_id) is None
    assert db.scalar(select(SignupMailLog.id)) is None
    assert result.subscribers == 1 and result.subscriptions == 2 and result.mail_log == 1
    assert result.consent_records == 3  # stale's, again's first and active's extra
