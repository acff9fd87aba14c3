"""The dispatch engine on SQLite with the real renderer and a real SMTP server (aiosmtpd).

Tasks run in this process through ``InlineQueue`` so each rule of the engine can be checked
step by step; tests/integration/test_dispatch.py runs the same engine with Celery workers.
"""

from __future__ import annotations

import email
import email.policy
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from newsletter.delivery import batches, fan_out
from newsletter.issues import lifecycle
from newsletter.mail.transport import close_transports
from newsletter.readers.addresses import email_hash
from newsletter.settings import Settings
from newsletter.store.db import dispose_engines, get_sessionmaker, utcnow
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
from tests.support.services import migrated_postgres_database
from tests.support.smtp import SMTPSink, free_port


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, settings: Settings) -> Iterator[str]:
    """Every engine test runs on SQLite and on PostgreSQL (their hot paths differ)."""
    if request.param == "sqlite":
        yield settings.database_url
        return
    with migrated_postgres_database() as url:
        yield url


@pytest.fixture
def db(database_url: str, dapp: Flask) -> Iterator[Session]:
    """A session on the test's database (overrides conftest's SQLite-only one); closed before
    the app's teardown disposes of the engines."""
    session = get_sessionmaker(database_url)()
    yield session
    session.close()


@pytest.fixture
def dsettings(settings: Settings, smtp_sink: SMTPSink, database_url: str) -> Settings:
    """Small batches, instant retries, auto-pause out of the way unless a test sets it."""
    return replace(
        settings,
        database_url=database_url,
        smtp_url=smtp_sink.url,
        smtp_timeout=5.0,
        batch_size=3,
        send_inflight_batches=2,
        send_retry_base_seconds=0.01,
        send_retry_max_seconds=0.02,
        autopause_min_attempts=10_000,
    )


@pytest.fixture
def dapp(dsettings: Settings) -> Iterator[Flask]:
    """The app (its Jinja environment renders the mails) with an app context pushed."""
    from newsletter import create_app

    application = create_app(dsettings)
    with application.app_context():
        yield application
    close_transports()
    dispose_engines()


@pytest.fixture
def queue(dsettings: Settings, dapp: Flask) -> seed.InlineQueue:
    """Tasks run inline."""
    return seed.InlineQueue(dsettings)


def statuses(db: Session, issue_id: int) -> dict[str, int]:
    """Deliveries of an issue by status."""
    db.expire_all()
    return fan_out.status_counts(db, issue_id)


def recipients(sink: SMTPSink) -> list[str]:
    """Every RCPT TO the sink accepted, in order."""
    return [r for m in sink.messages for r in m.rcpt_tos]


def start_digest(
    db: Session, settings: Settings, queue: seed.InlineQueue, slug: str = "daily"
) -> Issue:
    """Plan and start a digest of ``slug``; tasks are queued, not run."""
    newsletter = lifecycle.find_newsletter(db, slug)
    issue = lifecycle.create_digest(db, settings, newsletter)
    db.commit()
    return lifecycle.send(db, settings, issue.id, queue)


# --- who gets it ----------------------------------------------------------------------------------


def test_digest_reaches_exactly_the_eligible_readers_once(
    db: Session, dsettings: Settings, queue: seed.InlineQueue, smtp_sink: SMTPSink
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

    issue = start_digest(db, dsettings, queue)
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
    db: Session, dsettings: Settings, queue: seed.InlineQueue, smtp_sink: SMTPSink
) -> None:
    daily = seed.newsletter(db, "daily")
    seed.posts(db, 4, categories=[["World"], ["Sport"]])
    seed.reader(db, "all@example.com", [daily])
    seed.reader(db, "sport@example.com", [daily], topics=["Sport"])
    seed.reader(db, "arts@example.com", [daily], topics=["Arts"])  # nothing for them
    seed.reader(db, "weekly@example.com", [(daily, Frequency.WEEKLY)])

    issue = start_digest(db, dsettings, queue)
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


def test_second_digest_sends_only_new_posts_and_skips_when_nothing_new(
    db: Session, dsettings: Settings, queue: seed.InlineQueue, smtp_sink: SMTPSink
) -> None:
    daily = seed.newsletter(db, "daily")
    seed.posts(db, 2, now=utcnow() - timedelta(minutes=30), prefix="Old")
    seed.reader(db, "a@example.com", [daily])
    first = start_digest(db, dsettings, queue)
    queue.drain()
    assert statuses(db, first.id) == {"sent": 1}

    # Nothing published since: the next digest is recorded as skipped, no mail.
    again = lifecycle.create_digest(db, dsettings, daily)
    db.commit()
    assert again.status == IssueStatus.SKIPPED and "nothing new" in again.status_reason
    assert len(smtp_sink.messages) == 1

    # Published after the first digest's window closed.
    seed.posts(db, 1, prefix="Fresh", now=utcnow() + timedelta(minutes=5, seconds=1))
    second = lifecycle.create_digest(db, dsettings, daily, now=utcnow() + timedelta(seconds=2))
    db.commit()
    lifecycle.send(db, dsettings, second.id, queue)
    queue.drain()
    assert statuses(db, second.id) == {"sent": 1}
    text = smtp_sink.messages[-1].message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Fresh 0" in text and "Old 0" not in text


def test_campaign_goes_to_every_active_reader_of_its_list(
    db: Session, dsettings: Settings, queue: seed.InlineQueue, smtp_sink: SMTPSink
) -> None:
    offers = seed.newsletter(db, "offers", kind=NewsletterKind.CAMPAIGN)
    seed.reader(db, "a@example.com", [offers])
    seed.reader(db, "b@example.com", [offers], topics=["Sport"])  # topics are for digests
    seed.reader(db, "gone@example.com", [offers], sub_status=SubscriptionStatus.UNSUBSCRIBED)
    issue = lifecycle.create_campaign(
        db,
        dsettings,
        offers,
        subject="Summer offer",
        body_html="<p>Half price <script>alert(1)</script>this week.</p>",
    )
    db.commit()
    assert "<script>" not in issue.body_html and "Half price" in issue.body_text
    lifecycle.send(db, dsettings, issue.id, queue)
    queue.drain()
    assert sorted(recipients(smtp_sink)) == ["a@example.com", "b@example.com"]
    assert all(m.message["Subject"] == "Summer offer" for m in smtp_sink.messages)
    assert lifecycle.get_issue(db, issue.id).status == IssueStatus.SENT


# --- exactly once ---------------------------------------------------------------------------------


def test_a_duplicated_or_retried_batch_never_mails_twice(
    db: Session, dsettings: Settings, queue: seed.InlineQueue, smtp_sink: SMTPSink
) -> None:
    daily = seed.newsletter(db, "daily")
    seed.posts(db, 1)
    for i in range(5):
        seed.reader(db, f"r{i}@example.com", [daily])
    issue = start_digest(db, dsettings, queue)
    # Run the fan-out, then deliver every batch task twice (a broker redelivery).
    kind, issue_id, _, _ = queue.tasks.popleft()
    assert kind == "fan_out"
    fan_out.advance(dsettings, issue_id, queue)
    batch_tasks = [t for t in queue.tasks if t[0] == "send_batch"]
    queue.tasks.extend(batch_tasks)
    queue.drain()
    all_ids = [d for d in db.scalars(select(Delivery.id).where(Delivery.issue_id == issue.id))]
    again = batches.send_batch(dsettings, issue.id, all_ids, queue=queue)
    assert again.claimed == 0 and again.sent == 0
    assert sorted(recipients(smtp_sink)) == sorted(f"r{i}@example.com" for i in range(5))
    assert statuses(db, issue.id) == {"sent": 5}


def test_the_same_batch_run_concurrently_mails_each_reader_once(
    db: Session, dsettings: Settings, dapp: Flask, queue: seed.InlineQueue, smtp_sink: SMTPSink
) -> None:
    daily = seed.newsletter(db, "daily")
    seed.posts(db, 1)
    for i in range(12):
        seed.reader(db, f"r{i}@example.com", [daily])
    issue = start_digest(db, dsettings, queue)
    queue.tasks.clear()
    fan_out.fan_out(db, dsettings, issue.id, seed.InlineQueue(dsettings))
    ids = list(db.scalars(select(Delivery.id).where(Delivery.issue_id == issue.id)))
    results: list[batches.BatchResult] = []
    barrier = threading.Barrier(4)

    def worker() -> None:
        with dapp.app_context():
            barrier.wait()
            results.append(batches.send_batch(dsettings, issue.id, ids))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sum(r.claimed for r in results) == 12 and sum(r.sent for r in results) == 12
    assert sorted(recipients(smtp_sink)) == sorted(f"r{i}@example.com" for i in range(12))
    assert statuses(db, issue.id) == {"sent": 12}


def test_fan_out_reruns_and_respects_the_subscriber_snapshot(
    db: Session, dsettings: Settings, queue: seed.InlineQueue, smtp_sink: SMTPSink
) -> None:
    daily = seed.newsletter(db, "daily")
    seed.posts(db, 1)
    for i in range(4):
        seed.reader(db, f"r{i}@example.com", [daily])
    issue = start_digest(db, dsettings, queue)
    # A reader who confirms after the send started is not in this issue.
    seed.reader(db, "late@example.com", [daily])
    added = fan_out.fan_out(db, dsettings, issue.id, queue)
    assert added == 4
    # A second fan-out over the same range adds nothing.
    db.execute(update(Issue).where(Issue.id == issue.id).values(last_subscriber_id=0))
    db.commit()
    assert fan_out.fan_out(db, dsettings, issue.id, queue) == 0
    queue.tasks = type(queue.tasks)(t for t in queue.tasks if t[0] == "send_batch")
    queue.drain()
    assert "late@example.com" not in recipients(smtp_sink)
    assert len(recipients(smtp_sink)) == 4
    assert lifecycle.get_issue(db, issue.id).status == IssueStatus.SENT


def test_a_reader_who_leaves_mid_send_gets_nothing(
    db: Session, dsettings: Settings, queue: seed.InlineQueue, smtp_sink: SMTPSink
) -> None:
    daily = seed.newsletter(db, "daily")
    seed.posts(db, 1)
    seed.reader(db, "stays@example.com", [daily])
    leaver = seed.reader(db, "leaves@example.com", [daily])
    issue = start_digest(db, dsettings, queue)
    _, issue_id, _, _ = queue.tasks.popleft()
    fan_out.advance(dsettings, issue_id, queue)  # deliveries exist for both
    db.execute(update(Subscriber).where(Subscriber.id == leaver.id).values(status="unsubscribed"))
    db.commit()
    queue.drain()
    assert recipients(smtp_sink) == ["stays@example.com"]
    assert statuses(db, issue.id) == {"sent": 1, "skipped": 1}


# --- SMTP answers ---------------------------------------------------------------------------------


def test_a_5xx_fails_and_suppresses_that_address_only(
    db: Session, dsettings: Settings, queue: seed.InlineQueue, smtp_sink: SMTPSink
) -> None:
    daily = seed.newsletter(db, "daily")
    seed.posts(db, 1)
    for i in range(5):
        seed.reader(db, f"r{i}@example.com", [daily])
    smtp_sink.handler.reply_for["r2@example.com"] = "550 5.1.1 No such user"
    issue = start_digest(db, dsettings, queue)
    queue.drain()

    assert sorted(recipients(smtp_sink)) == [f"r{i}@example.com" for i in (0, 1, 3, 4)]
    assert statuses(db, issue.id) == {"sent": 4, "failed": 1}
    failed = db.scalar(select(Delivery).where(Delivery.status == DeliveryStatus.FAILED))
    assert failed is not None
    assert failed.smtp_code == 550 and "No such user" in failed.smtp_response
    bounced = db.get(Subscriber, failed.subscriber_id)
    assert bounced is not None and bounced.status == SubscriberStatus.BOUNCED
    assert db.scalar(
        select(Suppression.reason).where(Suppression.email_hash == email_hash("r2@example.com"))
    )
    assert lifecycle.get_issue(db, issue.id).status == IssueStatus.SENT


def test_a_policy_5xx_fails_the_mail_but_does_not_suppress(
    db: Session, dsettings: Settings, queue: seed.InlineQueue, smtp_sink: SMTPSink
) -> None:
    daily = seed.newsletter(db, "daily")
    seed.posts(db, 1)
    seed.reader(db, "a@example.com", [daily])
    seed.reader(db, "b@example.com", [daily])
    smtp_sink.handler.reply_for["b@example.com"] = "554 5.7.1 Message refused by policy"
    issue = start_digest(db, dsettings, queue)
    queue.drain()
    assert statuses(db, issue.id) == {"sent": 1, "failed": 1}
    assert db.scalar(select(func.count()).select_from(Suppression)) == 0
    b = db.get(Subscriber, seed.subscriber_id(db, "b@example.com"))
    assert b is not None and b.status == SubscriberStatus.ACTIVE


def test_a_4xx_for_one_reader_is_retried_and_then_delivered(
    db: Session, dsettings: Settings, queue: seed.InlineQueue, smtp_sink: SMTPSink
) -> None:
    daily = seed.newsletter(db, "daily")
    seed.posts(db, 1)
    for i in range(3):
        seed.reader(db, f"r{i}@example.com", [daily])
    smtp_sink.handler.reply_for["r1@example.com"] = "451 4.7.1 Greylisted, try later"
    issue = start_digest(db, dsettings, queue)
    queue.drain(retry=False)
    # The others went out; r1 waits, with one attempt and the server's answer recorded.
    assert sorted(recipients(smtp_sink)) == ["r0@example.com", "r2@example.com"]
    waiting = db.scalar(select(Delivery).where(Delivery.status == DeliveryStatus.QUEUED))
    assert waiting is not None and waiting.attempts == 1 and waiting.smtp_code == 451
    retry = next(r for r in queue.results if r.retry_ids)
    assert retry.retry_ids == [waiting.id] and retry.retry_in > 0
    del smtp_sink.handler.reply_for["r1@example.com"]
    batches.send_batch(dsettings, issue.id, retry.retry_ids, queue=queue, retries=1)
    queue.drain()
    assert sorted(recipients(smtp_sink)) == [f"r{i}@example.com" for i in range(3)]
    assert statuses(db, issue.id) == {"sent": 3}
    assert lifecycle.get_issue(db, issue.id).status == IssueStatus.SENT


def test_a_server_answering_4xx_to_everyone_counts_no_attempts_and_recovers(
    db: Session, dsettings: Settings, queue: seed.InlineQueue, smtp_sink: SMTPSink
) -> None:
    daily = seed.newsletter(db, "daily")
    seed.posts(db, 1)
    for i in range(6):
        seed.reader(db, f"r{i}@example.com", [daily])
    smtp_sink.handler.fail_all_with = "451 4.3.2 System not accepting messages"
    issue = start_digest(db, dsettings, queue)
    queue.drain(max_rounds=12)
    assert smtp_sink.messages == []
    db.expire_all()
    attempts = db.scalars(select(Delivery.attempts).where(Delivery.issue_id == issue.id)).all()
    assert attempts and max(attempts) == 0  # the server's trouble, not the readers'
    smtp_sink.handler.fail_all_with = None
    queue.drain()
    assert sorted(recipients(smtp_sink)) == [f"r{i}@example.com" for i in range(6)]
    assert lifecycle.get_issue(db, issue.id).status == IssueStatus.SENT


def test_connection_refused_is_retried_until_the_server_is_back(
    db: Session, dsettings: Settings, dapp: Flask, smtp_sink: SMTPSink
) -> None:
    down = replace(dsettings, smtp_url=f"smtp://127.0.0.1:{free_port()}")
    queue = seed.InlineQueue(down)
    daily = seed.newsletter(db, "daily")
    seed.posts(db, 1)
    for i in range(4):
        seed.reader(db, f"r{i}@example.com", [daily])
    issue = start_digest(db, down, queue)
    queue.drain(max_rounds=8)
    assert statuses(db, issue.id) == {"queued": 4}
    retries = [r for r in queue.results if r.retry_ids]
    assert (retries and "cannot" in retries[-1].stopped.lower()) or "refused" in retries[-1].stopped
    # The server comes back (the same queued tasks now reach a listening server).
    queue.settings = dsettings
    queue.drain()
    assert sorted(recipients(smtp_sink)) == [f"r{i}@example.com" for i in range(4)]
    assert lifecycle.get_issue(db, issue.id).status == IssueStatus.SENT


def test_a_reader_who_keeps_getting_4xx_is_given_up_but_not_suppressed(
    db: Session, dsettings: Settings, queue: seed.InlineQueue, smtp_sink: SMTPSink
) -> None:
    settings = replace(dsettings, send_max_attempts=3)
    queue.settings = settings
    daily = seed.newsletter(db, "daily")
    seed.posts(db, 1)
    seed.reader(db, "ok@example.com", [daily])
    seed.reader(db, "full@example.com", [daily])
    smtp_sink.handler.reply_for["full@example.com"] = "452 4.2.2 Mailbox full"
    issue = start_digest(db, settings, queue)
    queue.drain()
    assert statuses(db, issue.id) == {"sent": 1, "failed": 1}
    failed = db.scalar(select(Delivery).where(Delivery.status == DeliveryStatus.FAILED))
    assert failed is not None and failed.attempts == 3
    assert "gave up after 3 attempts" in failed.smtp_response
    assert db.scalar(select(func.count()).select_from(Suppression)) == 0

    # "Resend to failed" is one action once the mailbox has room again.
    del smtp_sink.handler.reply_for["full@example.com"]
    resent = lifecycle.resend_failed(db, settings, issue.id, queue)
    assert resent.requeued == 1 and resent.not_mailable == 0
    assert resent.issue.status == IssueStatus.SENDING
    queue.drain()
    assert len(smtp_sink.to("full@example.com")) == 1
    assert statuses(db, issue.id) == {"sent": 2}
    assert lifecycle.get_issue(db, issue.id).status == IssueStatus.SENT


def test_resend_failed_skips_bounced_readers(
    db: Session, dsettings: Settings, queue: seed.InlineQueue, smtp_sink: SMTPSink
) -> None:
    daily = seed.newsletter(db, "daily")
    seed.posts(db, 1)
    seed.reader(db, "ok@example.com", [daily])
    seed.reader(db, "nobody@example.com", [daily])
    smtp_sink.handler.reply_for["nobody@example.com"] = "550 5.1.1 unknown user"
    issue = start_digest(db, dsettings, queue)
    queue.drain()
    resent = lifecycle.resend_failed(db, dsettings, issue.id, queue)
    assert resent.requeued == 0 and resent.not_mailable == 1
    assert resent.issue.status == IssueStatus.SENT
    assert queue.tasks == type(queue.tasks)()


def test_too_many_failures_pause_the_send_by_themselves(
    db: Session, dsettings: Settings, queue: seed.InlineQueue, smtp_sink: SMTPSink
) -> None:
    settings = replace(
        dsettings, autopause_min_attempts=4, autopause_error_threshold=0.5, batch_size=10
    )
    queue.settings = settings
    daily = seed.newsletter(db, "daily")
    seed.posts(db, 1)
    for i in range(10):
        seed.reader(db, f"r{i}@example.com", [daily])
    smtp_sink.handler.fail_all_with = "554 5.3.0 relay misconfigured"
    issue = start_digest(db, settings, queue)
    queue.drain()
    issue = lifecycle.get_issue(db, issue.id)
    assert issue.status == IssueStatus.PAUSED
    assert issue.status_reason.startswith("auto-paused: 4 of 4 deliveries failed")
    assert "relay misconfigured" in issue.status_reason
    assert statuses(db, issue.id) == {"failed": 4, "queued": 6}

    # An operator fixes the relay and resumes: the error window starts afresh.
    smtp_sink.handler.fail_all_with = None
    lifecycle.resume(db, settings, issue.id, queue)
    queue.drain()
    assert statuses(db, issue.id) == {"failed": 4, "sent": 6}
    assert lifecycle.get_issue(db, issue.id).status == IssueStatus.SENT


# --- pause, resume, cancel ------------------------------------------------------------------------


def test_pause_holds_the_rest_and_resume_sends_it(
    db: Session, dsettings: Settings, queue: seed.InlineQueue, smtp_sink: SMTPSink
) -> None:
    daily = seed.newsletter(db, "daily")
    seed.posts(db, 1)
    for i in range(9):
        seed.reader(db, f"r{i}@example.com", [daily])
    issue = start_digest(db, dsettings, queue)
    queue.drain(max_rounds=2)  # the fan-out and one batch of 3
    assert len(smtp_sink.messages) == 3
    lifecycle.pause(db, issue.id)
    queue.drain()  # batches already in the broker find the issue paused
    assert len(smtp_sink.messages) == 3
    progress = lifecycle.progress(db, issue.id)
    assert progress["status"] == "paused" and progress["sent"] == 3 and progress["queued"] == 6
    assert not progress["done"]

    with pytest.raises(lifecycle.IllegalTransition, match="only sending issues can be paused"):
        lifecycle.pause(db, issue.id)
    lifecycle.resume(db, dsettings, issue.id, queue)
    queue.drain()
    assert sorted(recipients(smtp_sink)) == sorted(f"r{i}@example.com" for i in range(9))
    progress = lifecycle.progress(db, issue.id)
    assert progress["status"] == "sent" and progress["sent"] == 9 and progress["done"]


def test_cancel_skips_what_is_left(
    db: Session, dsettings: Settings, queue: seed.InlineQueue, smtp_sink: SMTPSink
) -> None:
    daily = seed.newsletter(db, "daily")
    seed.posts(db, 1)
    for i in range(9):
        seed.reader(db, f"r{i}@example.com", [daily])
    issue = start_digest(db, dsettings, queue)
    queue.drain(max_rounds=2)
    lifecycle.cancel(db, issue.id)
    queue.drain()
    assert len(smtp_sink.messages) == 3
    assert statuses(db, issue.id) == {"sent": 3, "skipped": 6}
    issue = lifecycle.get_issue(db, issue.id)
    assert issue.status == IssueStatus.CANCELLED and issue.finished_at is not None
    with pytest.raises(lifecycle.IllegalTransition) as info:
        lifecycle.resume(db, dsettings, issue.id, queue)
    assert str(info.value) == (
        f"Issue {issue.id} is cancelled; only paused or failed issues can be resumed."
    )


def test_illegal_transitions_say_what_is_allowed(
    db: Session, dsettings: Settings, queue: seed.InlineQueue
) -> None:
    offers = seed.newsletter(db, "offers", kind=NewsletterKind.CAMPAIGN)
    issue = lifecycle.create_campaign(db, dsettings, offers, subject="Hi", body_html="<p>x</p>")
    db.commit()
    with pytest.raises(lifecycle.IllegalTransition, match="only paused or failed"):
        lifecycle.resume(db, dsettings, issue.id, queue)
    with pytest.raises(lifecycle.IllegalTransition, match="only sending issues can be paused"):
        lifecycle.pause(db, issue.id)
    with pytest.raises(lifecycle.IssueNotFound):
        lifecycle.pause(db, 9999)
    with pytest.raises(lifecycle.InvalidRequest, match="campaign newsletter"):
        lifecycle.create_digest(db, dsettings, offers)
    with pytest.raises(lifecycle.InvalidRequest, match="needs a subject"):
        lifecycle.create_campaign(db, dsettings, offers, subject="  ", body_html="<p>x</p>")
    lifecycle.cancel(db, issue.id)
    with pytest.raises(lifecycle.IllegalTransition, match="is cancelled; only draft or scheduled"):
        lifecycle.send(db, dsettings, issue.id, queue)
    assert queue.tasks == type(queue.tasks)()


# --- recovery -------------------------------------------------------------------------------------


def test_rows_of_a_dead_worker_are_requeued_after_the_lease(
    db: Session, dsettings: Settings, queue: seed.InlineQueue, smtp_sink: SMTPSink
) -> None:
    daily = seed.newsletter(db, "daily")
    seed.posts(db, 1)
    for i in range(3):
        seed.reader(db, f"r{i}@example.com", [daily])
    issue = start_digest(db, dsettings, queue)
    queue.tasks.clear()
    fan_out.fan_out(db, dsettings, issue.id, seed.InlineQueue(dsettings))
    # A worker claimed all three and died before sending: rows stuck in `sending`.
    long_ago = utcnow() - timedelta(seconds=dsettings.delivery_lease_seconds + 5)
    db.execute(
        update(Delivery)
        .where(Delivery.issue_id == issue.id)
        .values(status="sending", claimed_at=long_ago, claimed_by="dead:1:x", enqueued_at=long_ago)
    )
    db.commit()
    fresh = fan_out.maintain(dsettings, queue, now=utcnow() - timedelta(seconds=10))
    assert fresh["recovered"] == 0  # not yet past the lease at that time
    report = fan_out.maintain(dsettings, queue)
    assert report["recovered"] == 3 and report["batches"] >= 1
    queue.drain()
    assert sorted(recipients(smtp_sink)) == [f"r{i}@example.com" for i in range(3)]
    assert lifecycle.get_issue(db, issue.id).status == IssueStatus.SENT


def test_rows_of_a_dead_worker_on_a_cancelled_issue_are_settled(
    db: Session, dsettings: Settings, queue: seed.InlineQueue, smtp_sink: SMTPSink
) -> None:
    daily = seed.newsletter(db, "daily")
    seed.posts(db, 1)
    for i in range(3):
        seed.reader(db, f"r{i}@example.com", [daily])
    issue = start_digest(db, dsettings, queue)
    queue.tasks.clear()
    fan_out.fan_out(db, dsettings, issue.id, seed.InlineQueue(dsettings))
    long_ago = utcnow() - timedelta(seconds=dsettings.delivery_lease_seconds + 5)
    db.execute(
        update(Delivery)
        .where(Delivery.issue_id == issue.id)
        .values(status="sending", claimed_at=long_ago, claimed_by="dead:1:x")
    )
    db.commit()
    lifecycle.cancel(db, issue.id)
    report = fan_out.maintain(dsettings, queue)
    assert report["abandoned"] == 3 and report["recovered"] == 0
    assert statuses(db, issue.id) == {"skipped": 3}
    assert queue.tasks == type(queue.tasks)() and smtp_sink.messages == []


def test_a_lost_task_and_a_lost_fan_out_are_restarted_by_the_tick(
    db: Session, dsettings: Settings, queue: seed.InlineQueue, smtp_sink: SMTPSink
) -> None:
    daily = seed.newsletter(db, "daily")
    seed.posts(db, 1)
    for i in range(5):
        seed.reader(db, f"r{i}@example.com", [daily])
    issue = start_digest(db, dsettings, queue)
    queue.tasks.clear()  # the fan-out task was lost (broker flushed)
    later = utcnow() + timedelta(seconds=dsettings.delivery_lease_seconds + 1)
    report = fan_out.maintain(dsettings, queue, now=later)
    assert report["fanouts"] == 1
    queue.drain(max_rounds=1)  # fan-out runs and enqueues batches ...
    queue.tasks.clear()  # ... which are lost too
    assert len(smtp_sink.messages) == 0
    report = fan_out.maintain(dsettings, queue, now=utcnow() + timedelta(hours=1))
    assert report["reenqueued"] >= 1 and report["batches"] >= 1
    queue.drain()
    report = fan_out.maintain(dsettings, queue, now=utcnow() + timedelta(hours=2))
    queue.drain()
    assert sorted(recipients(smtp_sink)) == [f"r{i}@example.com" for i in range(5)]
    assert lifecycle.get_issue(db, issue.id).status == IssueStatus.SENT


# --- local-time cohorts ---------------------------------------------------------------------------


def test_local_time_cohorts_go_out_as_each_zone_reaches_the_hour(
    db: Session, dsettings: Settings, queue: seed.InlineQueue, smtp_sink: SMTPSink
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
    issue = lifecycle.create_digest(db, dsettings, daily, send_at=send_at, local_send_time="08:00")
    db.commit()
    assert issue.status == IssueStatus.SCHEDULED
    lifecycle.start_due(db, dsettings, queue, now)
    queue.drain()
    rows = dict(
        db.execute(
            select(Subscriber.email, Delivery.due_at).join(
                Subscriber, Subscriber.id == Delivery.subscriber_id
            )
        ).all()
    )
    day = send_at.astimezone(fan_out.EARLIEST_ZONE).date()
    for address, zone in [
        ("tokyo@example.com", "Asia/Tokyo"),
        ("paris@example.com", "Europe/Paris"),
        ("ny@example.com", "America/New_York"),
        ("nowhere@example.com", "UTC"),
    ]:
        expected = fan_out.local_due_at(send_at, "08:00", zone, "UTC")
        assert rows[address] == expected
        local = expected.astimezone(fan_out._zone(zone) or fan_out.EARLIEST_ZONE)
        assert (local.date(), local.hour, local.minute) == (day, 8, 0)
    due_now = sorted(a for a, due in rows.items() if due <= utcnow())
    assert sorted(recipients(smtp_sink)) == due_now
    # The tick sends each cohort when it becomes due; the issue spans all of them. Time is
    # moved forward by moving each cohort's due time to just now, one cohort at a time.
    for address in sorted(rows, key=rows.__getitem__):
        if address in due_now:
            continue
        fan_out.maintain(dsettings, queue)
        queue.drain()
        assert address not in recipients(smtp_sink)
        assert lifecycle.get_issue(db, issue.id).status == IssueStatus.SENDING
        db.execute(
            update(Delivery)
            .where(Delivery.due_at == rows[address])
            .values(due_at=utcnow() - timedelta(seconds=1))
        )
        db.commit()
        fan_out.maintain(dsettings, queue)
        queue.drain()
        assert address in recipients(smtp_sink)
    assert sorted(recipients(smtp_sink)) == sorted(rows)
    progress = lifecycle.progress(db, issue.id)
    assert progress["sent"] == 4 and progress["status"] == "sent"


# --- progress and test sends ----------------------------------------------------------------------


def test_progress_reads_counts_rate_and_eta_mid_send(
    db: Session, dsettings: Settings, queue: seed.InlineQueue, smtp_sink: SMTPSink
) -> None:
    daily = seed.newsletter(db, "daily")
    seed.posts(db, 1)
    for i in range(9):
        seed.reader(db, f"r{i}@example.com", [daily])
    issue = start_digest(db, dsettings, queue)
    queue.drain(max_rounds=2)
    progress = lifecycle.progress(db, issue.id)
    assert progress["status"] == "sending" and progress["fanout_complete"]
    assert progress["total"] == 9 and progress["sent"] == 3 and progress["queued"] == 6
    assert progress["rate_per_second"] > 0 and progress["eta_seconds"] is not None
    queue.drain()
    done = lifecycle.progress(db, issue.id)
    assert done["done"] and done["eta_seconds"] is None and done["sent"] == 9


def test_test_send_prefixes_the_subject_and_records_nothing(
    db: Session, dsettings: Settings, queue: seed.InlineQueue, smtp_sink: SMTPSink
) -> None:
    daily = seed.newsletter(db, "daily")
    seed.posts(db, 2)
    seed.reader(db, "reader@example.com", [daily])
    issue = lifecycle.create_digest(db, dsettings, daily)
    db.commit()
    results = lifecycle.test_send(db, dsettings, issue.id, ["Ed@Example.com", "ed@example.com"])
    assert [r.address for r in results] == ["Ed@example.com"] and results[0].ok
    assert len(smtp_sink.messages) == 1
    msg = email.message_from_bytes(smtp_sink.messages[0].data, policy=email.policy.default)
    assert msg["Subject"] == f"[TEST] {issue.subject}"
    assert msg.defects == [] and msg.get_body(("plain",)) is not None
    assert db.scalar(select(func.count()).select_from(Delivery)) == 0
    assert lifecycle.get_issue(db, issue.id).status == IssueStatus.DRAFT
    with pytest.raises(lifecycle.InvalidRequest, match="not valid"):
        lifecycle.test_send(db, dsettings, issue.id, ["not an address"])
