"""The preferences form: lists, frequency, topics, time zone, and what it refuses."""

from __future__ import annotations

from dataclasses import replace

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.readers.preferences import Preferences, edit_reader, update_preferences
from newsletter.readers.subscriptions import SubscriptionError, UnknownNewsletter
from newsletter.settings import Settings
from newsletter.store.models import (
    ConsentRecord,
    Frequency,
    SubscriberStatus,
    SubscriptionStatus,
)
from tests.support.readers import Lists, add_subscriber, subs_of


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
    subs = subs_of(db, reader.id)
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


def test_an_editors_edit_changes_details_but_never_lists(db: Session, lists: Lists) -> None:
    reader = add_subscriber(
        db, "ann@example.com", SubscriberStatus.ACTIVE, [lists.daily, lists.offers]
    )
    edit_reader(
        db,
        reader,
        name=" Ann  Lee ",
        timezone="Europe/Paris",
        topics=("World", "Politics", "World"),
        frequencies={"daily": Frequency.WEEKLY},
    )
    db.commit()
    db.refresh(reader)
    assert (reader.name, reader.timezone, reader.topics) == (
        "Ann Lee",
        "Europe/Paris",
        ["Politics", "World"],
    )
    subs = {s.newsletter.slug: s for s in reader.subscriptions}
    assert subs["daily"].frequency == Frequency.WEEKLY
    assert {s.status for s in subs.values()} == {SubscriptionStatus.ACTIVE}
    refused = [
        {"timezone": "Mars/Base"},
        {"topics": ("Sport",)},
        {"frequencies": {"offers": Frequency.DAILY}},  # a campaign list
        {"frequencies": {"weekend": Frequency.DAILY}},  # not one of theirs
        {"name": "a\x07b"},
    ]
    for change in refused:
        with pytest.raises(SubscriptionError):
            edit_reader(db, reader, **change)  # type: ignore[arg-type]
        db.rollback()
    db.refresh(reader)
    assert reader.name == "Ann Lee" and reader.timezone == "Europe/Paris"
