"""What a form may offer: topics from posts and lists, lists by slug or id."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from newsletter.readers.choices import (
    available_timezones,
    available_topics,
    resolve_newsletters,
    timezone_groups,
    valid_timezone,
)
from newsletter.readers.subscriptions import SubscriptionError, UnknownNewsletter
from newsletter.store.db import utcnow
from newsletter.store.models import Post
from tests.support.readers import Lists


def test_topics_come_from_posts_and_lists(db: Session, lists: Lists) -> None:

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


def test_list_refs_that_only_look_like_numbers_are_unknown_lists(db: Session, lists: Lists) -> None:
    # "²".isdigit() is True but int("²") raises; "٣" is a decimal digit int() reads as 3.
    for ref in ("²", "٣", "\uff11"):  # the last is a fullwidth 1
        with pytest.raises(UnknownNewsletter):
            resolve_newsletters(db, [ref])
    with pytest.raises(SubscriptionError, match="at least one"):
        resolve_newsletters(db, ["", "  "])


def test_topics_are_what_digests_can_carry(db: Session, lists: Lists) -> None:
    db.add(
        Post(guid="o", link="https://n/o", title="o", categories=["Deals"], published_at=utcnow())
    )
    db.commit()
    # The weekend digest takes every category, so a post's category is a topic ...
    assert "Deals" in available_topics(db)
    # ... but once every digest is limited to its own categories, only those are.
    lists.weekly.categories = ["Culture"]
    lists.private.categories = ["Staff"]
    db.commit()
    assert available_topics(db) == ["Culture", "Politics", "Staff", "World"]


def test_time_zones_offered_are_canonical_and_grouped() -> None:
    offered = available_timezones()
    assert offered[0] == "UTC" and "Asia/Kolkata" in offered and "Europe/Berlin" in offered
    assert "Asia/Calcutta" not in offered and "US/Eastern" not in offered
    assert valid_timezone("Asia/Calcutta")  # an alias a reader already has stays valid
    assert not valid_timezone("Mars/Olympus_Mons") and not valid_timezone("posix/UTC")
    groups = dict(timezone_groups())
    assert ("America/Argentina/Buenos_Aires", "Buenos Aires (Argentina)") in groups["America"]
    assert ("Europe/Berlin", "Berlin") in groups["Europe"]
    # The reader's current zone is always offered, so saving the form never fails on it.
    kept = dict(timezone_groups("Asia/Calcutta"))["Asia"]
    assert ("Asia/Calcutta", "Calcutta") in kept
