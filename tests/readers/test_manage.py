"""An unsubscribe link: leave one list or all, pause, switch to weekly, undo."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from itsdangerous import TimestampSigner
from sqlalchemy.orm import Session

from newsletter.readers import links
from newsletter.readers.manage import (
    log_out_all_links,
    pause,
    read_manage_link,
    switch_frequency,
    undo_token,
    undo_unsubscribe,
    unsubscribe,
)
from newsletter.readers.signup import (
    subscribe,
)
from newsletter.readers.subscriptions import InvalidLink, SubscriptionError
from newsletter.settings import Settings
from newsletter.store.db import utcnow
from newsletter.store.models import (
    Frequency,
    Subscriber,
    SubscriberStatus,
    SubscriptionStatus,
)
from tests.support.readers import (
    Lists,
    add_subscriber,
    signup_for,
    subs_of,
)


def test_unsubscribe_one_list_then_all(db: Session, settings: Settings, lists: Lists) -> None:
    reader = add_subscriber(
        db, "u@example.com", SubscriberStatus.ACTIVE, [lists.daily, lists.offers]
    )
    assert unsubscribe(db, reader, lists.daily.id) == [lists.daily.id]
    db.commit()
    subs = subs_of(db, reader.id)
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


def test_undo_restores_only_the_lists_that_unsubscribe_left(
    db: Session, settings: Settings, lists: Lists
) -> None:
    reader = add_subscriber(
        db, "r@example.com", SubscriberStatus.ACTIVE, [lists.daily, lists.weekly, lists.offers]
    )
    now = utcnow()
    unsubscribe(db, reader, lists.weekly.id, now=now - timedelta(days=3))
    left = unsubscribe(db, reader, None, now=now)
    db.commit()
    token = undo_token(settings, reader, left)
    back = undo_unsubscribe(db, settings, reader, token)
    db.commit()
    assert back == sorted([lists.daily.id, lists.offers.id])
    subs = subs_of(db, reader.id)
    assert subs[lists.weekly.id].status == SubscriptionStatus.UNSUBSCRIBED
    assert reader.status == SubscriberStatus.ACTIVE
    assert undo_unsubscribe(db, settings, reader, token) == []  # done already: harmless


def test_undo_lasts_fifteen_minutes_and_dies_with_the_links(
    db: Session, settings: Settings, lists: Lists, monkeypatch: pytest.MonkeyPatch
) -> None:
    reader = add_subscriber(db, "late@example.com", SubscriberStatus.ACTIVE, [lists.daily])
    left = unsubscribe(db, reader, None)
    db.commit()
    sixteen_minutes_ago = int(time.time()) - 16 * 60
    with monkeypatch.context() as m:
        m.setattr(TimestampSigner, "get_timestamp", lambda self: sixteen_minutes_ago)
        late = undo_token(settings, reader, left)
    with pytest.raises(InvalidLink) as info:
        undo_unsubscribe(db, settings, reader, late)
    assert info.value.status == 410
    fresh = undo_token(settings, reader, left)
    log_out_all_links(db, reader)
    db.commit()
    with pytest.raises(InvalidLink) as info:
        undo_unsubscribe(db, settings, reader, fresh)
    assert info.value.status == 404
    with pytest.raises(InvalidLink) as info:
        undo_unsubscribe(db, settings, reader, fresh[:-3] + "abc")
    assert info.value.status == 400
    assert subs_of(db, reader.id)[lists.daily.id].status == SubscriptionStatus.UNSUBSCRIBED


def test_undo_never_activates_unconfirmed_lists(
    db: Session, settings: Settings, lists: Lists
) -> None:
    result = subscribe(db, settings, signup_for("p@example.com", lists.daily.id))
    db.commit()
    reader = db.get(Subscriber, result.subscriber_id)
    assert reader is not None
    unsubscribe(db, reader, None)
    db.commit()
    assert (
        undo_unsubscribe(db, settings, reader, undo_token(settings, reader, [lists.daily.id])) == []
    )
    assert subs_of(db, reader.id)[lists.daily.id].status == SubscriptionStatus.UNSUBSCRIBED


def test_pause_and_switch_frequency(db: Session, settings: Settings, lists: Lists) -> None:
    reader = add_subscriber(
        db, "pause@example.com", SubscriberStatus.ACTIVE, [lists.daily, lists.offers]
    )
    now = utcnow()
    assert sorted(pause(db, reader, None, 4, now=now)) == sorted([lists.daily.id, lists.offers.id])
    db.commit()
    subs = subs_of(db, reader.id)
    assert subs[lists.daily.id].paused_until == now + timedelta(weeks=4)
    with pytest.raises(SubscriptionError):
        pause(db, reader, None, 3)
    # Only digests have a frequency.
    assert switch_frequency(db, reader, None, Frequency.WEEKLY) == [lists.daily.id]
    db.commit()
    assert subs_of(db, reader.id)[lists.daily.id].frequency == Frequency.WEEKLY


def test_manage_link_checks_version(db: Session, settings: Settings, lists: Lists) -> None:
    reader = add_subscriber(db, "v@example.com", SubscriberStatus.ACTIVE, [lists.daily])
    token = links.unsubscribe_token(settings, links.subscriber_claim(reader, lists.daily.id))
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
