"""Signup: pending subscriptions and consent, and what a signup does to readers who exist."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.readers.choices import resolve_newsletters
from newsletter.readers.signup import (
    SignupAction,
    subscribe,
)
from newsletter.readers.subscriptions import SubscriptionError, UnknownNewsletter
from newsletter.readers.suppression import suppress
from newsletter.settings import Settings
from newsletter.store.models import (
    ConsentRecord,
    Subscriber,
    SubscriberStatus,
    SubscriptionStatus,
)
from tests.support.readers import (
    Lists,
    add_subscriber,
    confirm_signup,
    signup_for,
    subs_of,
)


def test_new_address_becomes_pending_with_consent_record(
    db: Session, settings: Settings, lists: Lists
) -> None:
    result = subscribe(db, settings, signup_for("new@example.com", lists.daily.id, name="Ann"))
    db.commit()
    assert result.action == SignupAction.CONFIRM
    subscriber = db.get(Subscriber, result.subscriber_id)
    assert subscriber is not None
    assert subscriber.status == SubscriberStatus.PENDING
    assert subscriber.name == ""  # the name waits for the confirmation, with the consent record
    assert {i: s.status for i, s in subs_of(db, subscriber.id).items()} == {
        lists.daily.id: SubscriptionStatus.PENDING
    }
    record = db.get(ConsentRecord, result.consent_id)
    assert record is not None
    assert record.newsletter_slugs == ["daily"]
    assert record.consent_text == "I agree."
    assert record.consent_text_version == "v-test"
    assert record.signup_ip == "203.0.113.9"
    assert record.signup_user_agent == "pytest"
    assert record.source == "/"
    assert record.name == "Ann"
    assert record.confirmed_at is None
    assert len(record.nonce) >= 24


def test_active_reader_on_all_lists_gets_already_subscribed(
    db: Session, settings: Settings, lists: Lists
) -> None:
    reader = add_subscriber(db, "on@example.com", SubscriberStatus.ACTIVE, [lists.daily])
    before = db.scalar(select(ConsentRecord.id).limit(1))
    result = subscribe(db, settings, signup_for("ON@example.com", lists.daily.id, name="Mallory"))
    db.commit()
    assert result == result.__class__(SignupAction.ALREADY_SUBSCRIBED, reader.id, None)
    assert before is None and db.scalar(select(ConsentRecord.id).limit(1)) is None
    db.expire_all()
    # A stranger cannot rename someone through the public form.
    assert db.get(Subscriber, reader.id).name == ""  # type: ignore[union-attr]


def test_active_reader_asking_for_more_lists_confirms_only_the_new_ones(
    db: Session, settings: Settings, lists: Lists
) -> None:
    reader = add_subscriber(db, "more@example.com", SubscriberStatus.ACTIVE, [lists.daily])
    result = subscribe(
        db, settings, signup_for("more@example.com", lists.daily.id, lists.offers.id)
    )
    db.commit()
    assert result.action == SignupAction.CONFIRM
    record = db.get(ConsentRecord, result.consent_id)
    assert record is not None and record.newsletter_slugs == ["offers"]
    subs = subs_of(db, reader.id)
    assert subs[lists.daily.id].status == SubscriptionStatus.ACTIVE
    assert subs[lists.offers.id].status == SubscriptionStatus.PENDING
    assert db.get(Subscriber, reader.id).status == SubscriberStatus.ACTIVE  # type: ignore[union-attr]


def test_unsubscribed_reader_must_opt_in_again(
    db: Session, settings: Settings, lists: Lists
) -> None:
    reader = add_subscriber(db, "gone@example.com", SubscriberStatus.UNSUBSCRIBED, [lists.daily])
    result = subscribe(db, settings, signup_for("gone@example.com", lists.daily.id))
    db.commit()
    assert result.action == SignupAction.CONFIRM
    db.expire_all()
    # Signing up changes nothing until the link is clicked.
    assert db.get(Subscriber, reader.id).status == SubscriberStatus.UNSUBSCRIBED  # type: ignore[union-attr]
    assert subs_of(db, reader.id)[lists.daily.id].status == SubscriptionStatus.UNSUBSCRIBED
    assert result.consent_id is not None
    confirm_signup(db, settings, result.consent_id)
    assert subs_of(db, reader.id)[lists.daily.id].status == SubscriptionStatus.ACTIVE
    assert db.get(Subscriber, reader.id).status == SubscriberStatus.ACTIVE  # type: ignore[union-attr]


def test_suppressed_and_bounced_addresses_get_nothing(
    db: Session, settings: Settings, lists: Lists
) -> None:
    suppress(db, "blocked@example.com", "complaint", "FBL report")
    db.commit()
    result = subscribe(db, settings, signup_for("Blocked@Example.com", lists.daily.id))
    assert result.action == SignupAction.NONE
    key = Subscriber.email_key == "blocked@example.com"
    assert db.scalar(select(Subscriber.id).where(key)) is None
    add_subscriber(db, "bounced@example.com", SubscriberStatus.BOUNCED, [lists.daily])
    assert subscribe(db, settings, signup_for("bounced@example.com", lists.daily.id)).action == (
        SignupAction.NONE
    )


def test_signup_requires_known_lists(db: Session, settings: Settings, lists: Lists) -> None:
    with pytest.raises(SubscriptionError):
        subscribe(db, settings, signup_for("x@example.com"))
    with pytest.raises(UnknownNewsletter):
        subscribe(db, settings, signup_for("x@example.com", 99999))
    with pytest.raises(UnknownNewsletter):
        resolve_newsletters(db, ["daily", "nope"])
    with pytest.raises(UnknownNewsletter):
        resolve_newsletters(db, ["staff"])  # not public
    got = resolve_newsletters(db, ["offers", str(lists.daily.id), "daily"])
    assert [n.slug for n in got] == ["daily", "offers"]


def test_the_name_of_a_signup_is_the_readers_only_once_that_signup_is_confirmed(
    db: Session, settings: Settings, lists: Lists
) -> None:
    stranger = subscribe(db, settings, signup_for("v@example.com", lists.daily.id, name="Idiot"))
    own = subscribe(db, settings, signup_for("v@example.com", lists.offers.id, name="Vera"))
    db.commit()
    assert stranger.consent_id is not None and own.consent_id is not None
    reader = db.get(Subscriber, own.subscriber_id)
    assert reader is not None and reader.name == ""  # neither signup has been confirmed
    confirm_signup(db, settings, own.consent_id)
    db.expire_all()
    assert db.get(Subscriber, own.subscriber_id).name == "Vera"  # type: ignore[union-attr]
    # Confirming the stranger's signup later adds its list but never renames the reader.
    confirm_signup(db, settings, stranger.consent_id)
    db.expire_all()
    assert db.get(Subscriber, own.subscriber_id).name == "Vera"  # type: ignore[union-attr]


def test_a_bad_name_is_refused_alike_for_new_and_known_addresses(
    db: Session, settings: Settings, lists: Lists
) -> None:
    add_subscriber(db, "known@example.com", SubscriberStatus.ACTIVE, [lists.daily])
    for address in ("known@example.com", "fresh@example.com"):
        with pytest.raises(SubscriptionError, match="not allowed"):
            subscribe(db, settings, signup_for(address, lists.offers.id, name="a\x00b"))
        db.rollback()
    assert (
        db.scalar(select(Subscriber.id).where(Subscriber.email_key == "fresh@example.com")) is None
    )
