"""send_batch: exactly once at the SMTP boundary (duplicated, retried and concurrent batches) and
what each SMTP answer does, on SQLite and PostgreSQL with a real SMTP server (aiosmtpd).

Tasks run in this process through ``InlineQueue`` so each rule of the engine can be checked
step by step; tests/integration/test_dispatch.py runs the same engine with Celery workers.
"""

from __future__ import annotations

import threading
from dataclasses import replace

from flask import Flask
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from newsletter.delivery import batches, fan_out
from newsletter.issues import lifecycle
from newsletter.readers.addresses import email_hash
from newsletter.settings import Settings
from newsletter.store.models import (
    Delivery,
    DeliveryStatus,
    IssueStatus,
    Subscriber,
    SubscriberStatus,
    Suppression,
)
from tests.support import dispatching as seed
from tests.support import engine
from tests.support.engine import recipients, start_digest, statuses
from tests.support.smtp import SMTPSink, free_port

# The engine's fixtures (SQLite and PostgreSQL, the sink, tasks inline) for this module.
settings = engine.settings
app = engine.app
db = engine.db
queue = engine.queue


def test_a_duplicated_or_retried_batch_never_mails_twice(
    db: Session, settings: Settings, queue: seed.InlineQueue, smtp_sink: SMTPSink
) -> None:
    daily = seed.newsletter(db, "daily")
    seed.posts(db, 1)
    for i in range(5):
        seed.reader(db, f"r{i}@example.com", [daily])
    issue = start_digest(db, settings, queue)
    # Run the fan-out, then deliver every batch task twice (a broker redelivery).
    kind, issue_id, _, _ = queue.tasks.popleft()
    assert kind == "fan_out"
    fan_out.advance(settings, issue_id, queue)
    batch_tasks = [t for t in queue.tasks if t[0] == "send_batch"]
    queue.tasks.extend(batch_tasks)
    queue.drain()
    all_ids = [d for d in db.scalars(select(Delivery.id).where(Delivery.issue_id == issue.id))]
    again = batches.send_batch(settings, issue.id, all_ids, queue=queue)
    assert again.claimed == 0 and again.sent == 0
    assert sorted(recipients(smtp_sink)) == sorted(f"r{i}@example.com" for i in range(5))
    assert statuses(db, issue.id) == {"sent": 5}


def test_the_same_batch_run_concurrently_mails_each_reader_once(
    db: Session, settings: Settings, app: Flask, queue: seed.InlineQueue, smtp_sink: SMTPSink
) -> None:
    daily = seed.newsletter(db, "daily")
    seed.posts(db, 1)
    for i in range(12):
        seed.reader(db, f"r{i}@example.com", [daily])
    issue = start_digest(db, settings, queue)
    queue.tasks.clear()
    fan_out.fan_out(db, settings, issue.id, seed.InlineQueue(settings))
    ids = list(db.scalars(select(Delivery.id).where(Delivery.issue_id == issue.id)))
    results: list[batches.BatchResult] = []
    barrier = threading.Barrier(4)

    def worker() -> None:
        with app.app_context():
            barrier.wait()
            results.append(batches.send_batch(settings, issue.id, ids))

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sum(r.claimed for r in results) == 12 and sum(r.sent for r in results) == 12
    assert sorted(recipients(smtp_sink)) == sorted(f"r{i}@example.com" for i in range(12))
    assert statuses(db, issue.id) == {"sent": 12}


def test_a_reader_who_leaves_mid_send_gets_nothing(
    db: Session, settings: Settings, queue: seed.InlineQueue, smtp_sink: SMTPSink
) -> None:
    daily = seed.newsletter(db, "daily")
    seed.posts(db, 1)
    seed.reader(db, "stays@example.com", [daily])
    leaver = seed.reader(db, "leaves@example.com", [daily])
    issue = start_digest(db, settings, queue)
    _, issue_id, _, _ = queue.tasks.popleft()
    fan_out.advance(settings, issue_id, queue)  # deliveries exist for both
    db.execute(update(Subscriber).where(Subscriber.id == leaver.id).values(status="unsubscribed"))
    db.commit()
    queue.drain()
    assert recipients(smtp_sink) == ["stays@example.com"]
    assert statuses(db, issue.id) == {"sent": 1, "skipped": 1}


def test_a_5xx_fails_and_suppresses_that_address_only(
    db: Session, settings: Settings, queue: seed.InlineQueue, smtp_sink: SMTPSink
) -> None:
    daily = seed.newsletter(db, "daily")
    seed.posts(db, 1)
    for i in range(5):
        seed.reader(db, f"r{i}@example.com", [daily])
    smtp_sink.handler.reply_for["r2@example.com"] = "550 5.1.1 No such user"
    issue = start_digest(db, settings, queue)
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
    db: Session, settings: Settings, queue: seed.InlineQueue, smtp_sink: SMTPSink
) -> None:
    daily = seed.newsletter(db, "daily")
    seed.posts(db, 1)
    seed.reader(db, "a@example.com", [daily])
    seed.reader(db, "b@example.com", [daily])
    smtp_sink.handler.reply_for["b@example.com"] = "554 5.7.1 Message refused by policy"
    issue = start_digest(db, settings, queue)
    queue.drain()
    assert statuses(db, issue.id) == {"sent": 1, "failed": 1}
    assert db.scalar(select(func.count()).select_from(Suppression)) == 0
    b = db.get(Subscriber, seed.subscriber_id(db, "b@example.com"))
    assert b is not None and b.status == SubscriberStatus.ACTIVE


def test_a_4xx_for_one_reader_is_retried_and_then_delivered(
    db: Session, settings: Settings, queue: seed.InlineQueue, smtp_sink: SMTPSink
) -> None:
    daily = seed.newsletter(db, "daily")
    seed.posts(db, 1)
    for i in range(3):
        seed.reader(db, f"r{i}@example.com", [daily])
    smtp_sink.handler.reply_for["r1@example.com"] = "451 4.7.1 Greylisted, try later"
    issue = start_digest(db, settings, queue)
    queue.drain(retry=False)
    # The others went out; r1 waits, with one attempt and the server's answer recorded.
    assert sorted(recipients(smtp_sink)) == ["r0@example.com", "r2@example.com"]
    waiting = db.scalar(select(Delivery).where(Delivery.status == DeliveryStatus.QUEUED))
    assert waiting is not None and waiting.attempts == 1 and waiting.smtp_code == 451
    retry = next(r for r in queue.results if r.retry_ids)
    assert retry.retry_ids == [waiting.id] and retry.retry_in > 0
    del smtp_sink.handler.reply_for["r1@example.com"]
    batches.send_batch(settings, issue.id, retry.retry_ids, queue=queue, retries=1)
    queue.drain()
    assert sorted(recipients(smtp_sink)) == [f"r{i}@example.com" for i in range(3)]
    assert statuses(db, issue.id) == {"sent": 3}
    assert lifecycle.get_issue(db, issue.id).status == IssueStatus.SENT


def test_a_server_answering_4xx_to_everyone_counts_no_attempts_and_recovers(
    db: Session, settings: Settings, queue: seed.InlineQueue, smtp_sink: SMTPSink
) -> None:
    daily = seed.newsletter(db, "daily")
    seed.posts(db, 1)
    for i in range(6):
        seed.reader(db, f"r{i}@example.com", [daily])
    smtp_sink.handler.fail_all_with = "451 4.3.2 System not accepting messages"
    issue = start_digest(db, settings, queue)
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
    db: Session, settings: Settings, app: Flask, smtp_sink: SMTPSink
) -> None:
    down = replace(settings, smtp_url=f"smtp://127.0.0.1:{free_port()}")
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
    queue.settings = settings
    queue.drain()
    assert sorted(recipients(smtp_sink)) == [f"r{i}@example.com" for i in range(4)]
    assert lifecycle.get_issue(db, issue.id).status == IssueStatus.SENT


def test_a_reader_who_keeps_getting_4xx_is_given_up_but_not_suppressed(
    db: Session, settings: Settings, queue: seed.InlineQueue, smtp_sink: SMTPSink
) -> None:
    settings = replace(settings, send_max_attempts=3)
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


def test_too_many_failures_pause_the_send_by_themselves(
    db: Session, settings: Settings, queue: seed.InlineQueue, smtp_sink: SMTPSink
) -> None:
    settings = replace(
        settings, autopause_min_attempts=4, autopause_error_threshold=0.5, batch_size=10
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


def _bouncing_list(
    db: Session, settings: Settings, smtp_sink: SMTPSink, readers: int = 60
) -> tuple[Settings, list[str]]:
    """Readers r00… of which every fifth mailbox does not exist; the guard at 10% of 20."""
    settings = replace(
        settings,
        guard_bounce_rate=0.1,
        guard_min_sample=20,
        autopause_min_attempts=10_000,  # only the guard here
        batch_size=100,
    )
    daily = seed.newsletter(db, "daily")
    seed.posts(db, 1)
    dead = []
    for i in range(readers):
        address = f"r{i:02d}@example.com"
        seed.reader(db, address, [daily])
        if i % 5 == 4:
            smtp_sink.handler.reply_for[address] = "550 5.1.1 No such user"
            dead.append(address)
    return settings, dead


def test_hard_bounces_pause_the_send_before_their_rate_passes_the_limit(
    db: Session, settings: Settings, queue: seed.InlineQueue, smtp_sink: SMTPSink
) -> None:
    settings, dead = _bouncing_list(db, settings, smtp_sink)
    queue.settings = settings
    issue = start_digest(db, settings, queue)
    queue.drain()

    # 10% of at least 20 mails allows 2: the second bounce (the 10th mail) pauses the send,
    # since a third on the next mail would pass the limit.
    issue = lifecycle.get_issue(db, issue.id)
    assert issue.status == IssueStatus.PAUSED
    assert issue.status_reason.startswith(
        "auto-paused: 2 of the first 10 mails hard-bounced: as many as the 10% limit "
        "(NEWSLETTER_GUARD_BOUNCE_RATE) allows in the first 20"
    )
    assert statuses(db, issue.id) == {"sent": 8, "failed": 2, "queued": 50}
    assert (issue.bounce_count, issue.mailed_count) == (2, 10)

    # The editor takes the rest of the bad list out and resumes: the counts stay, the send
    # finishes, and no more mail went to a dead address.
    for address in dead[2:]:
        db.execute(
            update(Subscriber).where(Subscriber.email == address).values(status="unsubscribed")
        )
    db.commit()
    lifecycle.resume(db, settings, issue.id, queue)
    queue.drain()
    issue = lifecycle.get_issue(db, issue.id)
    assert issue.status == IssueStatus.SENT
    assert statuses(db, issue.id) == {"sent": 48, "failed": 2, "skipped": 10}
    assert (issue.bounce_count, issue.mailed_count) == (2, 50)


def test_a_resumed_send_is_paused_again_by_its_next_hard_bounce_at_the_limit(
    db: Session, settings: Settings, queue: seed.InlineQueue, smtp_sink: SMTPSink
) -> None:
    settings, _ = _bouncing_list(db, settings, smtp_sink)
    queue.settings = settings
    issue = start_digest(db, settings, queue)
    queue.drain()
    lifecycle.resume(db, settings, issue.id, queue)
    queue.drain()
    issue = lifecycle.get_issue(db, issue.id)
    assert issue.status == IssueStatus.PAUSED
    assert issue.status_reason.startswith(
        "auto-paused: 3 of the first 15 mails hard-bounced: more than the 10% limit"
    )
    assert statuses(db, issue.id) == {"sent": 12, "failed": 3, "queued": 45}


def test_policy_refusals_are_not_hard_bounces_for_the_guard(
    db: Session, settings: Settings, queue: seed.InlineQueue, smtp_sink: SMTPSink
) -> None:
    settings, dead = _bouncing_list(db, settings, smtp_sink, readers=30)
    for address in dead:
        smtp_sink.handler.reply_for[address] = "554 5.7.1 Message refused by policy"
    queue.settings = settings
    issue = start_digest(db, settings, queue)
    queue.drain()
    issue = lifecycle.get_issue(db, issue.id)
    assert issue.status == IssueStatus.SENT
    assert (issue.bounce_count, issue.mailed_count) == (0, 30)
