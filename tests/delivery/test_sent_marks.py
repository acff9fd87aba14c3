"""Sent marks: what a sent mail leaves behind (the delivery marked sent, the ledger of the posts
the reader got) decides what the next digest sends; on SQLite and PostgreSQL (their recorders
differ)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session

from newsletter.issues import lifecycle
from newsletter.settings import Settings
from newsletter.store.db import utcnow
from newsletter.store.models import IssueStatus
from tests.support import dispatching as seed
from tests.support import engine
from tests.support.engine import start_digest, statuses
from tests.support.smtp import SMTPSink

# The engine's fixtures (SQLite and PostgreSQL, the sink, tasks inline) for this module.
settings = engine.settings
app = engine.app
db = engine.db
queue = engine.queue


def test_second_digest_sends_only_new_posts_and_skips_when_nothing_new(
    db: Session, settings: Settings, queue: seed.InlineQueue, smtp_sink: SMTPSink
) -> None:
    daily = seed.newsletter(db, "daily")
    seed.posts(db, 2, now=utcnow() - timedelta(minutes=30), prefix="Old")
    seed.reader(db, "a@example.com", [daily])
    first = start_digest(db, settings, queue)
    queue.drain()
    assert statuses(db, first.id) == {"sent": 1}

    # Nothing published since: the next digest is recorded as skipped, no mail.
    again = lifecycle.create_digest(db, settings, daily)
    db.commit()
    assert again.status == IssueStatus.SKIPPED and "nothing new" in again.status_reason
    assert len(smtp_sink.messages) == 1

    # Published after the first digest's window closed.
    seed.posts(db, 1, prefix="Fresh", now=utcnow() + timedelta(minutes=5, seconds=1))
    second = lifecycle.create_digest(db, settings, daily, now=utcnow() + timedelta(seconds=2))
    db.commit()
    lifecycle.send(db, settings, second.id, queue)
    queue.drain()
    assert statuses(db, second.id) == {"sent": 1}
    text = smtp_sink.messages[-1].message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Fresh 0" in text and "Old 0" not in text
