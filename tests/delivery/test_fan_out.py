"""Fan-out: who gets an issue (eligible readers, frequency cohorts, topics, the subscriber
snapshot) and when (local-time cohorts), on SQLite and PostgreSQL with a real SMTP server."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from newsletter.delivery import fan_out
from newsletter.delivery.recovery import maintain
from newsletter.issues import lifecycle
from newsletter.issues.local_time import EARLIEST_ZONE, _zone, local_due_at
from newsletter.issues.progress import progress as progress_of
from newsletter.readers.addresses import email_hash
from newsletter.settings import Settings
from newsletter.store.db import utcnow
from newsletter.store.models import (
    Delivery,
    DeliveryStatus,
    Frequency,
    Issue,
    IssueStatus,
    NewsletterKind,
    SentPost,
    Subscriber,
    SubscriberStatus,
    SubscriptionStatus,
    Suppression,
)
from tests.support import dispatching as seed
from tests.support import engine
from tests.support.engine import recipients, start_digest, statuses
from tests.support.smtp import SMTPSink

# The engine's fixtures (SQLite and PostgreSQL, the sink, tasks inline) for this module.
settings = engine.settings
app = engine.app
db = engine.db
queue = engine.queue


def test_digest_reaches_exactly_the_eligible_readers_once(
    db: Session, settings: Settings, queue: seed.InlineQueue, smtp_sink: SMTPSink
) -> None:
    daily = seed.newsletter(db, "daily")
    other = seed.newsletter(db, "other")
    seed.posts(db, 3)
    for i in range(7):
        seed.reader(db, f"ok{i}@example.com", [daily], name=f"Reader {i}")
    seed.reader(db, "other@example.com", [other])
    seed.reader(db, "left@example.com", [daily], sub_status=SubscriptionStatus.UNSUBSCRIBED)
    seed.reader(
        db,
        "pending@example.com",
        [daily],
        status=SubscriberStatus.PENDING,
        sub_status=SubscriptionStatus.PENDING,
    )
    seed.reader(db, "bounced@example.com", [daily], status=SubscriberStatus.BOUNCED)
    seed.reader(db, "paused@example.com", [daily], paused_until=utcnow() + timedelta(days=3))
    seed.reader(db, "blocked@example.com", [daily])
    db.add(Suppression(email_hash=email_hash("blocked@example.com"), reason="complaint"))
    db.commit()

    issue = start_digest(db, settings, queue)
    queue.drain()

    got = sorted(recipients(smtp_sink))
    assert got == sorted(f"ok{i}@example.com" for i in range(7))
    assert statuses(db, issue.id) == {"sent": 7}
    issue = lifecycle.get_issue(db, issue.id)
    assert issue.status == IssueStatus.SENT
    assert issue.total == 7
    assert issue.finished_at is not None
    # Batches of 3 with at most 2 in flight: the pump, not the fan-out, paced the work.
    assert queue.batches >= 3
    # Every mail is a well-formed digest with the reader's own unsubscribe link.
    for received in smtp_sink.messages:
        msg = received.message
        assert msg["To"] and received.rcpt_tos[0] in str(msg["To"])
        assert msg.defects == []
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert msg["Precedence"] == "bulk"
    # The ledger records every post each reader got.
    ledger = db.scalar(select(func.count()).select_from(SentPost))
    assert ledger == 7 * 3
    deliveries = db.scalars(select(Delivery).where(Delivery.issue_id == issue.id)).all()
    assert all(d.smtp_code == 250 and d.message_id.startswith("<") for d in deliveries)
    assert all(d.attempts == 1 and d.claimed_by == "" for d in deliveries)


def test_frequency_cohort_and_topics(
    db: Session, settings: Settings, queue: seed.InlineQueue, smtp_sink: SMTPSink
) -> None:
    daily = seed.newsletter(db, "daily")
    seed.posts(db, 4, categories=[["World"], ["Sport"]])
    seed.reader(db, "all@example.com", [daily])
    seed.reader(db, "sport@example.com", [daily], topics=["Sport"])
    seed.reader(db, "arts@example.com", [daily], topics=["Arts"])  # nothing for them
    seed.reader(db, "weekly@example.com", [(daily, Frequency.WEEKLY)])

    issue = start_digest(db, settings, queue)
    queue.drain()

    assert sorted(recipients(smtp_sink)) == ["all@example.com", "sport@example.com"]
    assert statuses(db, issue.id) == {"sent": 2, "skipped": 1}
    sport = smtp_sink.to("sport@example.com")[0].message
    text = sport.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Story 1" in text and "Story 3" in text and "Story 0" not in text
    skipped = db.scalar(
        select(Delivery).where(
            Delivery.issue_id == issue.id, Delivery.status == DeliveryStatus.SKIPPED
        )
    )
    assert skipped is not None and "nothing new" in skipped.smtp_response


def test_campaign_goes_to_every_active_reader_of_its_list(
    db: Session, settings: Settings, queue: seed.InlineQueue, smtp_sink: SMTPSink
) -> None:
    offers = seed.newsletter(db, "offers", kind=NewsletterKind.CAMPAIGN)
    seed.reader(db, "a@example.com", [offers])
    seed.reader(db, "b@example.com", [offers], topics=["Sport"])  # topics are for digests
    seed.reader(db, "gone@example.com", [offers], sub_status=SubscriptionStatus.UNSUBSCRIBED)
    issue = lifecycle.create_campaign(
        db,
        settings,
        offers,
        subject="Summer offer",
        body_html="<p>Half price <script>alert(1)</script>this week.</p>",
    )
    db.commit()
    assert "<script>" not in issue.body_html and "Half price" in issue.body_text
    lifecycle.send(db, settings, issue.id, queue)
    queue.drain()
    assert sorted(recipients(smtp_sink)) == ["a@example.com", "b@example.com"]
    assert all(m.message["Subject"] == "Summer offer" for m in smtp_sink.messages)
    assert lifecycle.get_issue(db, issue.id).status == IssueStatus.SENT


def test_fan_out_reruns_and_respects_the_subscriber_snapshot(
    db: Session, settings: Settings, queue: seed.InlineQueue, smtp_sink: SMTPSink
) -> None:
    daily = seed.newsletter(db, "daily")
    seed.posts(db, 1)
    for i in range(4):
        seed.reader(db, f"r{i}@example.com", [daily])
    issue = start_digest(db, settings, queue)
    # A reader who confirms after the send started is not in this issue.
    seed.reader(db, "late@example.com", [daily])
    added = fan_out.fan_out(db, settings, issue.id, queue)
    assert added == 4
    # A second fan-out over the same range adds nothing.
    db.execute(update(Issue).where(Issue.id == issue.id).values(last_subscriber_id=0))
    db.commit()
    assert fan_out.fan_out(db, settings, issue.id, queue) == 0
    queue.tasks = type(queue.tasks)(t for t in queue.tasks if t[0] == "send_batch")
    queue.drain()
    assert "late@example.com" not in recipients(smtp_sink)
    assert len(recipients(smtp_sink)) == 4
    assert lifecycle.get_issue(db, issue.id).status == IssueStatus.SENT


def test_local_time_cohorts_go_out_as_each_zone_reaches_the_hour(
    db: Session, settings: Settings, queue: seed.InlineQueue, smtp_sink: SMTPSink
) -> None:
    daily = seed.newsletter(db, "daily")
    seed.posts(db, 1)
    seed.reader(db, "tokyo@example.com", [daily], timezone="Asia/Tokyo")
    seed.reader(db, "paris@example.com", [daily], timezone="Europe/Paris")
    seed.reader(db, "ny@example.com", [daily], timezone="America/New_York")
    seed.reader(db, "nowhere@example.com", [daily], timezone="Mars/Olympus")  # falls back to UTC
    now = utcnow()
    # The issue's day is "today" in UTC+14; each reader gets it at 08:00 of that day, locally.
    send_at = now - timedelta(minutes=1)
    issue = lifecycle.create_digest(db, settings, daily, send_at=send_at, local_send_time="08:00")
    db.commit()
    assert issue.status == IssueStatus.SCHEDULED
    lifecycle.start_due(db, settings, queue, now)
    queue.drain()
    rows = dict(
        db.execute(
            select(Subscriber.email, Delivery.due_at).join(
                Subscriber, Subscriber.id == Delivery.subscriber_id
            )
        ).all()
    )
    day = send_at.astimezone(EARLIEST_ZONE).date()
    for address, zone in [
        ("tokyo@example.com", "Asia/Tokyo"),
        ("paris@example.com", "Europe/Paris"),
        ("ny@example.com", "America/New_York"),
        ("nowhere@example.com", "UTC"),
    ]:
        expected = local_due_at(send_at, "08:00", zone, "UTC")
        assert rows[address] == expected
        local = expected.astimezone(_zone(zone) or EARLIEST_ZONE)
        assert (local.date(), local.hour, local.minute) == (day, 8, 0)
    due_now = sorted(a for a, due in rows.items() if due <= utcnow())
    assert sorted(recipients(smtp_sink)) == due_now
    # The tick sends each cohort when it becomes due; the issue spans all of them. Time is
    # moved forward by moving each cohort's due time to just now, one cohort at a time.
    for address in sorted(rows, key=rows.__getitem__):
        if address in due_now:
            continue
        maintain(settings, queue)
        queue.drain()
        assert address not in recipients(smtp_sink)
        assert lifecycle.get_issue(db, issue.id).status == IssueStatus.SENDING
        db.execute(
            update(Delivery)
            .where(Delivery.due_at == rows[address])
            .values(due_at=utcnow() - timedelta(seconds=1))
        )
        db.commit()
        maintain(settings, queue)
        queue.drain()
        assert address in recipients(smtp_sink)
    assert sorted(recipients(smtp_sink)) == sorted(rows)
    progress = progress_of(db, issue.id)
    assert progress.sent == 4 and progress.status == "sent"
