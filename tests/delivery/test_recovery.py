"""Recovery by beat's tick: rows claimed by a dead worker, lost tasks and a lost fan-out, on
SQLite and PostgreSQL with a real SMTP server."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update
from sqlalchemy.orm import Session

from newsletter.delivery import fan_out
from newsletter.delivery.recovery import maintain
from newsletter.issues import lifecycle
from newsletter.settings import Settings
from newsletter.store.db import utcnow
from newsletter.store.models import Delivery, IssueStatus
from tests.support import dispatching as seed
from tests.support import engine
from tests.support.engine import recipients, start_digest, statuses
from tests.support.smtp import SMTPSink

# The engine's fixtures (SQLite and PostgreSQL, the sink, tasks inline) for this module.
settings = engine.settings
app = engine.app
db = engine.db
queue = engine.queue


def test_rows_of_a_dead_worker_are_requeued_after_the_lease(
    db: Session, settings: Settings, queue: seed.InlineQueue, smtp_sink: SMTPSink
) -> None:
    daily = seed.newsletter(db, "daily")
    seed.posts(db, 1)
    for i in range(3):
        seed.reader(db, f"r{i}@example.com", [daily])
    issue = start_digest(db, settings, queue)
    queue.tasks.clear()
    fan_out.fan_out(db, settings, issue.id, seed.InlineQueue(settings))
    # A worker claimed all three and died before sending: rows stuck in `sending`.
    long_ago = utcnow() - timedelta(seconds=settings.delivery_lease_seconds + 5)
    db.execute(
        update(Delivery)
        .where(Delivery.issue_id == issue.id)
        .values(status="sending", claimed_at=long_ago, claimed_by="dead:1:x", enqueued_at=long_ago)
    )
    db.commit()
    fresh = maintain(settings, queue, now=utcnow() - timedelta(seconds=10))
    assert fresh["recovered"] == 0  # not yet past the lease at that time
    report = maintain(settings, queue)
    assert report["recovered"] == 3 and report["batches"] >= 1
    queue.drain()
    assert sorted(recipients(smtp_sink)) == [f"r{i}@example.com" for i in range(3)]
    assert lifecycle.get_issue(db, issue.id).status == IssueStatus.SENT


def test_rows_of_a_dead_worker_on_a_cancelled_issue_are_settled(
    db: Session, settings: Settings, queue: seed.InlineQueue, smtp_sink: SMTPSink
) -> None:
    daily = seed.newsletter(db, "daily")
    seed.posts(db, 1)
    for i in range(3):
        seed.reader(db, f"r{i}@example.com", [daily])
    issue = start_digest(db, settings, queue)
    queue.tasks.clear()
    fan_out.fan_out(db, settings, issue.id, seed.InlineQueue(settings))
    long_ago = utcnow() - timedelta(seconds=settings.delivery_lease_seconds + 5)
    db.execute(
        update(Delivery)
        .where(Delivery.issue_id == issue.id)
        .values(status="sending", claimed_at=long_ago, claimed_by="dead:1:x")
    )
    db.commit()
    lifecycle.cancel(db, issue.id)
    report = maintain(settings, queue)
    assert report["abandoned"] == 3 and report["recovered"] == 0
    assert statuses(db, issue.id) == {"skipped": 3}
    assert queue.tasks == type(queue.tasks)() and smtp_sink.messages == []


def test_a_lost_task_and_a_lost_fan_out_are_restarted_by_the_tick(
    db: Session, settings: Settings, queue: seed.InlineQueue, smtp_sink: SMTPSink
) -> None:
    daily = seed.newsletter(db, "daily")
    seed.posts(db, 1)
    for i in range(5):
        seed.reader(db, f"r{i}@example.com", [daily])
    issue = start_digest(db, settings, queue)
    queue.tasks.clear()  # the fan-out task was lost (broker flushed)
    later = utcnow() + timedelta(seconds=settings.delivery_lease_seconds + 1)
    report = maintain(settings, queue, now=later)
    assert report["fanouts"] == 1
    queue.drain(max_rounds=1)  # fan-out runs and enqueues batches ...
    queue.tasks.clear()  # ... which are lost too
    assert len(smtp_sink.messages) == 0
    report = maintain(settings, queue, now=utcnow() + timedelta(hours=1))
    assert report["reenqueued"] >= 1 and report["batches"] >= 1
    queue.drain()
    report = maintain(settings, queue, now=utcnow() + timedelta(hours=2))
    queue.drain()
    assert sorted(recipients(smtp_sink)) == [f"r{i}@example.com" for i in range(5)]
    assert lifecycle.get_issue(db, issue.id).status == IssueStatus.SENT
