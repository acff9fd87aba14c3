"""What an issue says before it exists: the preview of the next digest, and why it may be empty."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from flask import Flask
from sqlalchemy.orm import Session

from newsletter.issues.content import NothingToPreview, preview
from newsletter.settings import Settings
from tests.support import dispatching as seed


def test_an_empty_preview_names_the_newest_posts_and_why_they_do_not_count(
    app: Flask, db: Session, settings: Settings
) -> None:
    seed.newsletter(db, "daily")
    seed.posts(db, 2, now=datetime(2024, 7, 14, 8, 0, tzinfo=UTC), prefix="Old")
    with app.app_context(), pytest.raises(NothingToPreview) as empty:
        preview(db, settings, "daily")
    message = str(empty.value)
    assert message.startswith("No new posts for Daily since ")
    assert "'Old 1' published 2024-07-14 07:55" in message and "'Old 0'" in message
    assert "NEWSLETTER_DIGEST_LOOKBACK_HOURS" in message


def test_an_empty_preview_without_any_post_says_where_posts_come_from(
    app: Flask, db: Session, settings: Settings
) -> None:
    seed.newsletter(db, "daily")
    with app.app_context(), pytest.raises(NothingToPreview) as empty:
        preview(db, settings, "daily")
    assert "There are no posts at all yet: add a feed or push one through the API." in str(
        empty.value
    )


def test_a_recent_post_is_previewed(app: Flask, db: Session, settings: Settings) -> None:
    seed.newsletter(db, "daily")
    seed.posts(db, 1, prefix="Fresh")
    with app.app_context():
        subject, html, text = preview(db, settings, "daily")
    assert "Fresh 0" in text and "Fresh 0" in html and subject
