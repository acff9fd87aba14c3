"""Double opt-in: the confirmation link, its binding and expiry, confirming once."""

from __future__ import annotations

from dataclasses import replace

import pytest
from sqlalchemy.orm import Session

from newsletter.readers.confirmation import confirm, read_confirmation
from newsletter.readers.signup import (
    confirm_token_for,
    subscribe,
)
from newsletter.readers.subscriptions import InvalidLink
from newsletter.settings import Settings
from newsletter.store.models import (
    ConsentRecord,
    Subscriber,
    SubscriberStatus,
    SubscriptionStatus,
)
from tests.support.readers import (
    Lists,
    confirm_signup,
    signup_for,
    subs_of,
)


def test_confirm_activates_reader_lists_and_consent(
    db: Session, settings: Settings, lists: Lists
) -> None:
    result = subscribe(db, settings, signup_for("c@example.com", lists.daily.id, lists.offers.id))
    db.commit()
    assert result.consent_id is not None
    subscriber_id, activated = confirm_signup(db, settings, result.consent_id)
    assert sorted(activated) == sorted([lists.daily.id, lists.offers.id])
    subscriber = db.get(Subscriber, subscriber_id)
    assert subscriber is not None and subscriber.status == SubscriberStatus.ACTIVE
    assert subscriber.confirmed_at is not None
    assert all(s.status == SubscriptionStatus.ACTIVE for s in subs_of(db, subscriber_id).values())
    record = db.get(ConsentRecord, result.consent_id)
    assert record is not None and record.confirmed_at is not None
    assert record.confirm_ip == "198.51.100.1" and record.confirm_user_agent == "UA"


def test_confirming_twice_changes_nothing_the_second_time(
    db: Session, settings: Settings, lists: Lists
) -> None:
    result = subscribe(db, settings, signup_for("twice@example.com", lists.daily.id))
    db.commit()
    assert result.consent_id is not None
    token = confirm_token_for(settings, db, result.consent_id)
    assert token
    first = confirm(db, read_confirmation(db, settings, token), ip="1.1.1.1")
    db.commit()
    record = db.get(ConsentRecord, result.consent_id)
    assert record is not None
    confirmed_at = record.confirmed_at
    second = confirm(db, read_confirmation(db, settings, token), ip="2.2.2.2")
    db.commit()
    assert first.first_time and first.activated == (lists.daily.id,)
    assert not second.first_time and second.activated == ()
    db.expire_all()
    record = db.get(ConsentRecord, result.consent_id)
    assert record is not None
    assert record.confirmed_at == confirmed_at and record.confirm_ip == "1.1.1.1"


def test_confirmation_token_is_bound_to_address_and_nonce(
    db: Session, settings: Settings, lists: Lists
) -> None:
    result = subscribe(db, settings, signup_for("bind@example.com", lists.daily.id))
    db.commit()
    assert result.consent_id is not None
    token = confirm_token_for(settings, db, result.consent_id)
    assert token
    subscriber = db.get(Subscriber, result.subscriber_id)
    assert subscriber is not None
    # The address changed since the mail was sent: the link must not confirm the new one.
    subscriber.email = subscriber.email_key = "changed@example.com"
    db.commit()
    with pytest.raises(InvalidLink) as info:
        read_confirmation(db, settings, token)
    assert info.value.status == 400
    subscriber.email = subscriber.email_key = "bind@example.com"
    record = db.get(ConsentRecord, result.consent_id)
    assert record is not None
    record.nonce = "another-nonce"
    db.commit()
    with pytest.raises(InvalidLink):
        read_confirmation(db, settings, token)


def test_expired_confirmation_is_410(db: Session, settings: Settings, lists: Lists) -> None:
    result = subscribe(db, settings, signup_for("late@example.com", lists.daily.id))
    db.commit()
    assert result.consent_id is not None
    token = confirm_token_for(settings, db, result.consent_id)
    assert token
    import time

    time.sleep(1.1)
    short = replace(settings, confirm_expiry_days=1)
    read_confirmation(db, short, token)  # still fine with a day to go
    with pytest.raises(InvalidLink) as info:
        read_confirmation(db, replace(settings, confirm_expiry_days=0), token)
    assert info.value.status == 410 and info.value.expired
