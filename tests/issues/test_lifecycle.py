"""The issue state machine: pause, resume, cancel, resend to failed, illegal transitions,
progress and test sends, on SQLite and PostgreSQL with a real SMTP server."""

from __future__ import annotations

import email
import email.policy

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsletter.issues import lifecycle
from newsletter.issues.progress import progress as progress_of
from newsletter.settings import Settings
from newsletter.store.models import Delivery, IssueStatus, NewsletterKind
from tests.support import dispatching as seed
from tests.support import engine
from tests.support.engine import recipients, start_digest, statuses
from tests.support.smtp import SMTPSink

# The engine's fixtures (SQLite and PostgreSQL, the sink, tasks inline) for this module.
settings = engine.settings
app = engine.app
db = engine.db
queue = engine.queue


def test_resend_failed_skips_bounced_readers(
    db: Session, settings: Settings, queue: seed.InlineQueue, smtp_sink: SMTPSink
) -> None:
    daily = seed.newsletter(db, "daily")
    seed.posts(db, 1)
    seed.reader(db, "ok@example.com", [daily])
    seed.reader(db, "nobody@example.com", [daily])
    smtp_sink.handler.reply_for["nobody@example.com"] = "550 5.1.1 unknown user"
    issue = start_digest(db, settings, queue)
    queue.drain()
    resent = lifecycle.resend_failed(db, settings, issue.id, queue)
    assert resent.requeued == 0 and resent.not_mailable == 1
    assert resent.issue.status == IssueStatus.SENT
    assert queue.tasks == type(queue.tasks)()


def test_pause_holds_the_rest_and_resume_sends_it(
    db: Session, settings: Settings, queue: seed.InlineQueue, smtp_sink: SMTPSink
) -> None:
    daily = seed.newsletter(db, "daily")
    seed.posts(db, 1)
    for i in range(9):
        seed.reader(db, f"r{i}@example.com", [daily])
    issue = start_digest(db, settings, queue)
    queue.drain(max_rounds=2)  # the fan-out and one batch of 3
    assert len(smtp_sink.messages) == 3
    lifecycle.pause(db, issue.id)
    queue.drain()  # batches already in the broker find the issue paused
    assert len(smtp_sink.messages) == 3
    progress = progress_of(db, issue.id)
    assert progress.status == "paused" and progress.sent == 3 and progress.queued == 6
    assert not progress.done

    with pytest.raises(lifecycle.IllegalTransition, match="only sending issues can be paused"):
        lifecycle.pause(db, issue.id)
    lifecycle.resume(db, settings, issue.id, queue)
    queue.drain()
    assert sorted(recipients(smtp_sink)) == sorted(f"r{i}@example.com" for i in range(9))
    progress = progress_of(db, issue.id)
    assert progress.status == "sent" and progress.sent == 9 and progress.done


def test_cancel_skips_what_is_left(
    db: Session, settings: Settings, queue: seed.InlineQueue, smtp_sink: SMTPSink
) -> None:
    daily = seed.newsletter(db, "daily")
    seed.posts(db, 1)
    for i in range(9):
        seed.reader(db, f"r{i}@example.com", [daily])
    issue = start_digest(db, settings, queue)
    queue.drain(max_rounds=2)
    lifecycle.cancel(db, issue.id)
    queue.drain()
    assert len(smtp_sink.messages) == 3
    assert statuses(db, issue.id) == {"sent": 3, "skipped": 6}
    issue = lifecycle.get_issue(db, issue.id)
    assert issue.status == IssueStatus.CANCELLED and issue.finished_at is not None
    with pytest.raises(lifecycle.IllegalTransition) as info:
        lifecycle.resume(db, settings, issue.id, queue)
    assert str(info.value) == (
        f"Issue {issue.id} is cancelled; only paused or failed issues can be resumed."
    )


def test_illegal_transitions_say_what_is_allowed(
    db: Session, settings: Settings, queue: seed.InlineQueue
) -> None:
    offers = seed.newsletter(db, "offers", kind=NewsletterKind.CAMPAIGN)
    issue = lifecycle.create_campaign(db, settings, offers, subject="Hi", body_html="<p>x</p>")
    db.commit()
    with pytest.raises(lifecycle.IllegalTransition, match="only paused or failed"):
        lifecycle.resume(db, settings, issue.id, queue)
    with pytest.raises(lifecycle.IllegalTransition, match="only sending issues can be paused"):
        lifecycle.pause(db, issue.id)
    with pytest.raises(lifecycle.IssueNotFound):
        lifecycle.pause(db, 9999)
    with pytest.raises(lifecycle.InvalidRequest, match="campaign newsletter"):
        lifecycle.create_digest(db, settings, offers)
    with pytest.raises(lifecycle.InvalidRequest, match="needs a subject"):
        lifecycle.create_campaign(db, settings, offers, subject="  ", body_html="<p>x</p>")
    lifecycle.cancel(db, issue.id)
    with pytest.raises(lifecycle.IllegalTransition, match="is cancelled; only draft or scheduled"):
        lifecycle.send(db, settings, issue.id, queue)
    assert queue.tasks == type(queue.tasks)()


def test_progress_reads_counts_rate_and_eta_mid_send(
    db: Session, settings: Settings, queue: seed.InlineQueue, smtp_sink: SMTPSink
) -> None:
    daily = seed.newsletter(db, "daily")
    seed.posts(db, 1)
    for i in range(9):
        seed.reader(db, f"r{i}@example.com", [daily])
    issue = start_digest(db, settings, queue)
    queue.drain(max_rounds=2)
    progress = progress_of(db, issue.id)
    assert progress.status == "sending" and progress.fanout_complete
    assert progress.total == 9 and progress.sent == 3 and progress.queued == 6
    assert progress.rate_per_second > 0 and progress.eta_seconds is not None
    queue.drain()
    done = progress_of(db, issue.id)
    assert done.done and done.eta_seconds is None and done.sent == 9


def test_test_send_prefixes_the_subject_and_records_nothing(
    db: Session, settings: Settings, queue: seed.InlineQueue, smtp_sink: SMTPSink
) -> None:
    daily = seed.newsletter(db, "daily")
    seed.posts(db, 2)
    seed.reader(db, "reader@example.com", [daily])
    issue = lifecycle.create_digest(db, settings, daily)
    db.commit()
    results = lifecycle.test_send(db, settings, issue.id, ["Ed@Example.com", "ed@example.com"])
    assert [r.address for r in results] == ["Ed@example.com"] and results[0].ok
    assert len(smtp_sink.messages) == 1
    msg = email.message_from_bytes(smtp_sink.messages[0].data, policy=email.policy.default)
    assert msg["Subject"] == f"[TEST] {issue.subject}"
    assert msg.defects == [] and msg.get_body(("plain",)) is not None
    assert db.scalar(select(func.count()).select_from(Delivery)) == 0
    assert lifecycle.get_issue(db, issue.id).status == IssueStatus.DRAFT
    with pytest.raises(lifecycle.InvalidRequest, match="not valid"):
        lifecycle.test_send(db, settings, issue.id, ["not an address"])
