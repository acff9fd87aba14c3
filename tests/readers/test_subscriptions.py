"""Domain rules of the reader's path, called directly with a Session (no request, no broker)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.readers import consent, links
from newsletter.readers.choices import available_topics, resolve_newsletters
from newsletter.readers.confirmation import confirm, read_confirmation
from newsletter.readers.manage import (
    pause,
    read_manage_link,
    resubscribe,
    switch_frequency,
    unsubscribe,
)
from newsletter.readers.preferences import Preferences, update_preferences
from newsletter.readers.purge import purge_pending
from newsletter.readers.signup import (
    Signup,
    SignupAction,
    confirm_token_for,
    log_signup_mail,
    subscribe,
)
from newsletter.readers.subscriptions import InvalidLink, SubscriptionError, UnknownNewsletter
from newsletter.readers.suppression import is_suppressed, suppress
from newsletter.settings import Settings
from newsletter.store.db import utcnow
from newsletter.store.models import (
    ConsentRecord,
    Frequency,
    SignupMailLog,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
    Suppression,
)
from tests.support.readers import Lists, add_subscriber, make_lists


@pytest.fixture
def lists(db: Session) -> Lists:
    return make_lists(db)


def _signup(address: str, *newsletter_ids: int, name: str = "") -> Signup:
    return Signup(
        email=address,
        newsletter_ids=tuple(newsletter_ids),
        name=name,
        source="/",
        ip="203.0.113.9",
        user_agent="pytest",
        consent_text="I agree.",
        consent_version="v-test",
    )


def _subs(db: Session, subscriber_id: int) -> dict[int, Subscription]:
    db.expire_all()
    rows = db.scalars(select(Subscription).where(Subscription.subscriber_id == subscriber_id))
    return {s.newsletter_id: s for s in rows}


def _confirm(db: Session, settings: Settings, consent_id: int) -> tuple[int, tuple[int, ...]]:
    token = confirm_token_for(settings, db, consent_id)
    assert token
    result = confirm(db, read_confirmation(db, settings, token), ip="198.51.100.1", user_agent="UA")
    db.commit()
    return result.subscriber_id, result.activated


def test_new_address_becomes_pending_with_consent_record(
    db: Session, settings: Settings, lists: Lists
) -> None:
    result = subscribe(db, settings, _signup("new@example.com", lists.daily.id, name="Ann"))
    db.commit()
    assert result.action == SignupAction.CONFIRM
    subscriber = db.get(Subscriber, result.subscriber_id)
    assert subscriber is not None
    assert subscriber.status == SubscriberStatus.PENDING
    assert subscriber.name == "Ann"
    assert {i: s.status for i, s in _subs(db, subscriber.id).items()} == {
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
    assert record.confirmed_at is None
    assert len(record.nonce) >= 24


def test_confirm_activates_reader_lists_and_consent(
    db: Session, settings: Settings, lists: Lists
) -> None:
    result = subscribe(db, settings, _signup("c@example.com", lists.daily.id, lists.offers.id))
    db.commit()
    assert result.consent_id is not None
    subscriber_id, activated = _confirm(db, settings, result.consent_id)
    assert sorted(activated) == sorted([lists.daily.id, lists.offers.id])
    subscriber = db.get(Subscriber, subscriber_id)
    assert subscriber is not None and subscriber.status == SubscriberStatus.ACTIVE
    assert subscriber.confirmed_at is not None
    assert all(s.status == SubscriptionStatus.ACTIVE for s in _subs(db, subscriber_id).values())
    record = db.get(ConsentRecord, result.consent_id)
    assert record is not None and record.confirmed_at is not None
    assert record.confirm_ip == "198.51.100.1" and record.confirm_user_agent == "UA"


def test_confirming_twice_changes_nothing_the_second_time(
    db: Session, settings: Settings, lists: Lists
) -> None:
    result = subscribe(db, settings, _signup("twice@example.com", lists.daily.id))
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


def test_active_reader_on_all_lists_gets_already_subscribed(
    db: Session, settings: Settings, lists: Lists
) -> None:
    reader = add_subscriber(db, "on@example.com", SubscriberStatus.ACTIVE, [lists.daily])
    before = db.scalar(select(ConsentRecord.id).limit(1))
    result = subscribe(db, settings, _signup("ON@example.com", lists.daily.id, name="Mallory"))
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
    result = subscribe(db, settings, _signup("more@example.com", lists.daily.id, lists.offers.id))
    db.commit()
    assert result.action == SignupAction.CONFIRM
    record = db.get(ConsentRecord, result.consent_id)
    assert record is not None and record.newsletter_slugs == ["offers"]
    subs = _subs(db, reader.id)
    assert subs[lists.daily.id].status == SubscriptionStatus.ACTIVE
    assert subs[lists.offers.id].status == SubscriptionStatus.PENDING
    assert db.get(Subscriber, reader.id).status == SubscriberStatus.ACTIVE  # type: ignore[union-attr]


def test_unsubscribed_reader_must_opt_in_again(
    db: Session, settings: Settings, lists: Lists
) -> None:
    reader = add_subscriber(db, "gone@example.com", SubscriberStatus.UNSUBSCRIBED, [lists.daily])
    result = subscribe(db, settings, _signup("gone@example.com", lists.daily.id))
    db.commit()
    assert result.action == SignupAction.CONFIRM
    db.expire_all()
    # Signing up changes nothing until the link is clicked.
    assert db.get(Subscriber, reader.id).status == SubscriberStatus.UNSUBSCRIBED  # type: ignore[union-attr]
    assert _subs(db, reader.id)[lists.daily.id].status == SubscriptionStatus.UNSUBSCRIBED
    assert result.consent_id is not None
    _confirm(db, settings, result.consent_id)
    assert _subs(db, reader.id)[lists.daily.id].status == SubscriptionStatus.ACTIVE
    assert db.get(Subscriber, reader.id).status == SubscriberStatus.ACTIVE  # type: ignore[union-attr]


def test_suppressed_and_bounced_addresses_get_nothing(
    db: Session, settings: Settings, lists: Lists
) -> None:
    suppress(db, "blocked@example.com", "complaint", "FBL report")
    db.commit()
    result = subscribe(db, settings, _signup("Blocked@Example.com", lists.daily.id))
    assert result.action == SignupAction.NONE
    key = Subscriber.email_key == "blocked@example.com"
    assert db.scalar(select(Subscriber.id).where(key)) is None
    add_subscriber(db, "bounced@example.com", SubscriberStatus.BOUNCED, [lists.daily])
    assert subscribe(db, settings, _signup("bounced@example.com", lists.daily.id)).action == (
        SignupAction.NONE
    )


def test_suppression_helpers_are_idempotent_and_case_insensitive(db: Session) -> None:
    first = suppress(db, "Someone@Example.com", "bounce", "550 no such user")
    second = suppress(db, "someone@example.com", "complaint")
    db.commit()
    assert first.id == second.id and second.reason == "bounce"
    assert is_suppressed(db, "SOMEONE@example.com")
    assert not is_suppressed(db, "other@example.com")
    assert db.scalar(select(Suppression.email_hash)) != "someone@example.com"


def test_signup_requires_known_lists(db: Session, settings: Settings, lists: Lists) -> None:
    with pytest.raises(SubscriptionError):
        subscribe(db, settings, _signup("x@example.com"))
    with pytest.raises(UnknownNewsletter):
        subscribe(db, settings, _signup("x@example.com", 99999))
    with pytest.raises(UnknownNewsletter):
        resolve_newsletters(db, ["daily", "nope"])
    with pytest.raises(UnknownNewsletter):
        resolve_newsletters(db, ["staff"])  # not public
    got = resolve_newsletters(db, ["offers", str(lists.daily.id), "daily"])
    assert [n.slug for n in got] == ["daily", "offers"]


def test_confirmation_token_is_bound_to_address_and_nonce(
    db: Session, settings: Settings, lists: Lists
) -> None:
    result = subscribe(db, settings, _signup("bind@example.com", lists.daily.id))
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
    result = subscribe(db, settings, _signup("late@example.com", lists.daily.id))
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


def test_unsubscribe_one_list_then_all(db: Session, settings: Settings, lists: Lists) -> None:
    reader = add_subscriber(
        db, "u@example.com", SubscriberStatus.ACTIVE, [lists.daily, lists.offers]
    )
    assert unsubscribe(db, reader, lists.daily.id) == [lists.daily.id]
    db.commit()
    subs = _subs(db, reader.id)
    assert subs[lists.daily.id].status == SubscriptionStatus.UNSUBSCRIBED
    assert subs[lists.daily.id].unsubscribed_at is not None
    assert subs[lists.offers.id].status == SubscriptionStatus.ACTIVE
    assert reader.status == SubscriberStatus.ACTIVE
    assert unsubscribe(db, reader, lists.daily.id) == []  # already gone: harmless
    assert unsubscribe(db, reader, None) == [lists.offers.id]
    db.commit()
    assert reader.status == SubscriberStatus.UNSUBSCRIBED


def test_leaving_the_last_list_unsubscribes_the_reader(
    db: Session, settings: Settings, lists: Lists
) -> None:
    reader = add_subscriber(db, "last@example.com", SubscriberStatus.ACTIVE, [lists.daily])
    unsubscribe(db, reader, lists.daily.id)
    db.commit()
    db.expire_all()
    assert db.get(Subscriber, reader.id).status == SubscriberStatus.UNSUBSCRIBED  # type: ignore[union-attr]


def test_resubscribe_restores_only_lists_just_left(
    db: Session, settings: Settings, lists: Lists
) -> None:
    reader = add_subscriber(
        db, "r@example.com", SubscriberStatus.ACTIVE, [lists.daily, lists.weekly, lists.offers]
    )
    now = utcnow()
    unsubscribe(db, reader, lists.weekly.id, now=now - timedelta(days=3))
    unsubscribe(db, reader, None, now=now)
    db.commit()
    back = resubscribe(db, reader, None, now=now + timedelta(minutes=1))
    db.commit()
    assert sorted(back) == sorted([lists.daily.id, lists.offers.id])
    subs = _subs(db, reader.id)
    assert subs[lists.weekly.id].status == SubscriptionStatus.UNSUBSCRIBED
    assert reader.status == SubscriberStatus.ACTIVE
    # Too late: after the window the reader must sign up (and confirm) again.
    unsubscribe(db, reader, lists.daily.id, now=now)
    db.commit()
    assert resubscribe(db, reader, lists.daily.id, now=now + timedelta(days=31)) == []


def test_resubscribe_never_activates_unconfirmed_lists(
    db: Session, settings: Settings, lists: Lists
) -> None:
    result = subscribe(db, settings, _signup("p@example.com", lists.daily.id))
    db.commit()
    reader = db.get(Subscriber, result.subscriber_id)
    assert reader is not None
    unsubscribe(db, reader, None)
    db.commit()
    assert resubscribe(db, reader, None) == []
    assert _subs(db, reader.id)[lists.daily.id].status == SubscriptionStatus.UNSUBSCRIBED


def test_pause_and_switch_frequency(db: Session, settings: Settings, lists: Lists) -> None:
    reader = add_subscriber(
        db, "pause@example.com", SubscriberStatus.ACTIVE, [lists.daily, lists.offers]
    )
    now = utcnow()
    assert sorted(pause(db, reader, None, 4, now=now)) == sorted([lists.daily.id, lists.offers.id])
    db.commit()
    subs = _subs(db, reader.id)
    assert subs[lists.daily.id].paused_until == now + timedelta(weeks=4)
    with pytest.raises(SubscriptionError):
        pause(db, reader, None, 3)
    # Only digests have a frequency.
    assert switch_frequency(db, reader, None, Frequency.WEEKLY) == [lists.daily.id]
    db.commit()
    assert _subs(db, reader.id)[lists.daily.id].frequency == Frequency.WEEKLY


def test_manage_link_checks_version(db: Session, settings: Settings, lists: Lists) -> None:
    reader = add_subscriber(db, "v@example.com", SubscriberStatus.ACTIVE, [lists.daily])
    token = links.unsubscribe_token(settings, reader.id, reader.token_version, lists.daily.id)
    link = read_manage_link(db, settings, token)
    assert link.subscriber.id == reader.id and link.newsletter_id == lists.daily.id
    reader.token_version += 1
    db.commit()
    with pytest.raises(InvalidLink) as info:
        read_manage_link(db, settings, token)
    assert info.value.status == 404
    with pytest.raises(InvalidLink) as info:
        read_manage_link(db, settings, token[:-3] + "abc")
    assert info.value.status == 400


def test_preferences_add_remove_frequency_topics_timezone(
    db: Session, settings: Settings, lists: Lists
) -> None:
    reader = add_subscriber(db, "prefs@example.com", SubscriberStatus.ACTIVE, [lists.daily])
    change = update_preferences(
        db,
        settings,
        reader,
        Preferences(
            name="  Ann   Lee ",
            timezone="Europe/Berlin",
            newsletter_ids=frozenset({lists.offers.id, lists.weekly.id}),
            topics=("Politics",),
            frequencies={lists.weekly.id: Frequency.DAILY},
            consent_text="Shown text",
        ),
        ip="192.0.2.1",
    )
    db.commit()
    assert change.added == tuple(sorted([lists.offers.id, lists.weekly.id]))
    assert change.removed == (lists.daily.id,)
    subs = _subs(db, reader.id)
    assert subs[lists.daily.id].status == SubscriptionStatus.UNSUBSCRIBED
    # Added from the preferences page: active at once, no new opt-in, consent recorded.
    assert subs[lists.offers.id].status == SubscriptionStatus.ACTIVE
    assert subs[lists.weekly.id].frequency == Frequency.DAILY
    assert reader.name == "Ann Lee" and reader.timezone == "Europe/Berlin"
    assert reader.topics == ["Politics"]
    record = db.scalar(select(ConsentRecord).where(ConsentRecord.subscriber_id == reader.id))
    assert record is not None and record.confirmed_at is not None
    assert sorted(record.newsletter_slugs) == ["offers", "weekend"]
    assert record.source == "preferences page" and record.consent_text == "Shown text"


@pytest.mark.parametrize(
    ("field", "value"),
    [("timezone", "Mars/Olympus"), ("topics", ("Gossip",)), ("name", "a\r\nBcc: x@y")],
)
def test_preferences_refuse_bad_values(
    db: Session, settings: Settings, lists: Lists, field: str, value: object
) -> None:
    reader = add_subscriber(db, "bad@example.com", SubscriberStatus.ACTIVE, [lists.daily])
    prefs = Preferences(
        name="", timezone="UTC", newsletter_ids=frozenset({lists.daily.id}), topics=()
    )
    with pytest.raises(SubscriptionError):
        update_preferences(db, settings, reader, replace(prefs, **{field: value}))


def test_preferences_refuse_unknown_or_private_lists(
    db: Session, settings: Settings, lists: Lists
) -> None:
    reader = add_subscriber(db, "priv@example.com", SubscriberStatus.ACTIVE, [lists.daily])
    for wanted in ({99999}, {lists.private.id}):
        with pytest.raises(UnknownNewsletter):
            update_preferences(
                db,
                settings,
                reader,
                Preferences(name="", timezone="UTC", newsletter_ids=frozenset(wanted)),
            )


def test_topics_come_from_posts_and_lists(db: Session, lists: Lists) -> None:
    from newsletter.store.models import Post

    db.add_all(
        [
            Post(
                guid="1",
                link="https://n/1",
                title="a",
                categories=["Sport", "World"],
                published_at=utcnow(),
            ),
            Post(
                guid="2", link="https://n/2", title="b", categories=["Sport"], published_at=utcnow()
            ),
            Post(guid="3", link="https://n/3", title="c", categories=[], published_at=utcnow()),
        ]
    )
    db.commit()
    assert available_topics(db) == ["Politics", "Sport", "World"]


def test_purge_pending_forgets_unconfirmed_signups(
    db: Session, settings: Settings, lists: Lists
) -> None:
    now = utcnow()
    old = now - timedelta(days=settings.confirm_expiry_days + 1)
    stale = subscribe(db, settings, _signup("stale@example.com", lists.daily.id), now=old)
    fresh = subscribe(db, settings, _signup("fresh@example.com", lists.daily.id), now=now)
    # An old pending reader who signed up again yesterday keeps everything.
    again = subscribe(db, settings, _signup("again@example.com", lists.daily.id), now=old)
    subscribe(db, settings, _signup("again@example.com", lists.daily.id), now=now)
    active = add_subscriber(db, "active@example.com", SubscriberStatus.ACTIVE, [lists.daily])
    extra = subscribe(db, settings, _signup("active@example.com", lists.offers.id), now=old)
    db.execute(
        Subscription.__table__.update()
        .where(Subscription.subscriber_id == active.id)
        .where(Subscription.newsletter_id == lists.offers.id)
        .values(created_at=old)
    )
    log_signup_mail(db, "stale@example.com", "confirm", now=now - timedelta(days=3))
    db.commit()

    result = purge_pending(db, settings, now=now)
    db.commit()

    assert db.get(Subscriber, stale.subscriber_id) is None
    assert db.get(ConsentRecord, stale.consent_id) is None
    assert db.get(Subscriber, fresh.subscriber_id) is not None
    assert db.get(Subscriber, again.subscriber_id) is not None
    subs = _subs(db, active.id)
    assert set(subs) == {lists.daily.id}  # the unconfirmed extra list is dropped
    assert subs[lists.daily.id].status == SubscriptionStatus.ACTIVE
    assert db.get(ConsentRecord, extra.consent_id) is None
    assert db.scalar(select(SignupMailLog.id)) is None
    assert result.subscribers == 1 and result.subscriptions == 2 and result.mail_log == 1
    assert result.consent_records == 3  # stale's, again's first and active's extra


def test_export_subscriber_includes_subscriptions_and_consent(
    db: Session, settings: Settings, lists: Lists
) -> None:
    result = subscribe(db, settings, _signup("export@example.com", lists.daily.id, name="Eve"))
    db.commit()
    assert result.consent_id is not None
    _confirm(db, settings, result.consent_id)
    data = consent.export_subscriber(db, "EXPORT@example.com")
    assert data is not None
    assert data["subscriber"]["email"] == "export@example.com"
    assert data["subscriber"]["status"] == "active"
    assert data["subscriptions"][0]["newsletter"]["slug"] == "daily"
    assert data["subscriptions"][0]["status"] == "active"
    record = data["consent_records"][0]
    assert record["consent_text"] == "I agree." and record["signup_ip"] == "203.0.113.9"
    assert record["confirmed_at"] and "nonce" not in record
    assert data["suppressed"] is None
    assert consent.export_subscriber(db, "nobody@example.com") is None
    import json

    json.dumps(data)  # JSON-ready as it is


def test_list_refs_that_only_look_like_numbers_are_unknown_lists(db: Session, lists: Lists) -> None:
    # "²".isdigit() is True but int("²") raises; "٣" is a decimal digit int() reads as 3.
    for ref in ("²", "٣", "\uff11"):  # the last is a fullwidth 1
        with pytest.raises(UnknownNewsletter):
            resolve_newsletters(db, [ref])
    with pytest.raises(SubscriptionError, match="at least one"):
        resolve_newsletters(db, ["", "  "])
