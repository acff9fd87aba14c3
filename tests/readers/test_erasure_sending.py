"""Erasing a reader while an issue to them is still sending: their delivery row goes, so no
batch, retry, recovery or re-run fan-out mails them; everyone else still gets the issue once.
On SQLite and PostgreSQL, over real SMTP (the aiosmtpd sink)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.delivery import fan_out
from newsletter.delivery.recovery import maintain
from newsletter.readers.erasure import erase, find_reader
from newsletter.settings import Settings
from newsletter.store.models import Delivery, Issue, IssueStatus
from tests.support import dispatching as seed
from tests.support import engine
from tests.support.engine import recipients, start_digest
from tests.support.smtp import SMTPSink

# The engine's fixtures (SQLite and PostgreSQL, the sink, tasks inline) for this module.
settings = engine.settings
app = engine.app
db = engine.db
queue = engine.queue


def test_a_reader_erased_mid_send_is_not_mailed_and_the_send_completes(
    db: Session, settings: Settings, queue: seed.InlineQueue, smtp_sink: SMTPSink
) -> None:
    daily = seed.newsletter(db, "daily")
    seed.posts(db, 2)
    for i in range(7):
        seed.reader(db, f"r{i}@example.com", [daily])
    issue = start_digest(db, settings, queue)
    # Run the fan-out alone: every delivery row exists, queued, and batches are enqueued.
    kind, issue_id, _, _ = queue.tasks.popleft()
    assert kind == "fan_out"
    fan_out.advance(settings, issue_id, queue)
    assert db.scalars(select(Delivery).where(Delivery.issue_id == issue.id)).all()

    erase(db, find_reader(db, "r5@example.com"))
    db.commit()
    queue.drain()
    maintain(settings, queue)  # the tick's sweep finds nothing of theirs to re-queue
    fan_out.advance(settings, issue.id, queue)  # nor does a fan-out run again
    queue.drain()

    got = sorted(recipients(smtp_sink))
    assert got == sorted(f"r{i}@example.com" for i in range(7) if i != 5)
    db.expire_all()
    final = db.get(Issue, issue.id)
    assert final is not None and final.status == IssueStatus.SENT
