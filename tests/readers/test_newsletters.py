"""Creating, changing and paging the newsletters (the lists readers choose)."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from newsletter.readers.newsletters import (
    NewsletterError,
    find_newsletter,
    newsletter_page,
    update_newsletter,
)
from newsletter.store.models import Frequency, SubscriberStatus, SubscriptionStatus
from tests.support.readers import Lists, add_subscriber


def test_an_update_changes_what_is_given_by_the_rules_of_create(db: Session, lists: Lists) -> None:
    update_newsletter(lists.daily, name="  Morning  ", public=False, categories=["A", "A", ""])
    db.commit()
    daily = find_newsletter(db, "daily")
    assert daily is not None
    assert (daily.name, daily.is_public, daily.categories) == ("Morning", False, ["A"])
    assert daily.default_frequency == Frequency.DAILY and daily.description
    for bad in ("", "   ", "a\nb", "x" * 201):
        with pytest.raises(NewsletterError):
            update_newsletter(daily, name=bad)
    assert daily.name == "Morning"
    assert find_newsletter(db, "nope") is None


def test_pages_in_display_order_with_active_reader_counts(db: Session, lists: Lists) -> None:
    add_subscriber(db, "a@example.com", SubscriberStatus.ACTIVE, [lists.daily, lists.offers])
    add_subscriber(db, "p@example.com", SubscriberStatus.PENDING, [lists.daily])
    add_subscriber(
        db,
        "u@example.com",
        SubscriberStatus.ACTIVE,
        [lists.daily],
        sub_status=SubscriptionStatus.UNSUBSCRIBED,
    )
    first = newsletter_page(db, limit=2)
    assert [(n.slug, count) for n, count in first] == [("staff", 0), ("daily", 1)]
    last = first[-1][0]
    rest = newsletter_page(db, after=(last.position, last.id), limit=5)
    assert [(n.slug, count) for n, count in rest] == [("weekend", 0), ("offers", 1)]
    assert [n.slug for n, _ in newsletter_page(db, slug="offers")] == ["offers"]
