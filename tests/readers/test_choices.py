"""What a form may offer: topics from posts and lists, lists by slug or id."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from newsletter.readers.choices import available_topics, resolve_newsletters
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
