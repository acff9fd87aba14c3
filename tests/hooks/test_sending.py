"""Delivering the outbox to a real receiver on 127.0.0.1: signed, retried after 500s, given up,
endpoints disabled after repeated failures, private addresses refused, lost messages swept."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsletter.delivery.sent_marks import batch_connection
from newsletter.hooks import events, sending
from newsletter.hooks.endpoints import register
from newsletter.hooks.queue import enqueue_after_commit
from newsletter.settings import Settings
from newsletter.store.db import get_sessionmaker, utcnow
from newsletter.store.models import (
    WebhookAttempt,
    WebhookDelivery,
    WebhookDeliveryStatus,
    WebhookEndpoint,
)
from tests.hooks.conftest import InlineWebhookQueue
from tests.support.webhook_receiver import WebhookReceiver


def delivery(db: Session, delivery_id: int) -> WebhookDelivery:
    """The delivery row as it is now."""
    db.expire_all()
    return db.get_one(WebhookDelivery, delivery_id)


def test_a_committed_event_is_enqueued_sent_and_verified(
    db: Session, endpoint: WebhookEndpoint, receiver: WebhookReceiver, queue: InlineWebhookQueue
) -> None:
    (delivery_id,) = events.emit(db, "issue.sent", {"issue_id": 7})
    assert queue.enqueued == []  # nothing before the commit
    db.commit()
    assert queue.enqueued == [(delivery_id, 0)]

    (outcome,) = queue.drain()
    assert outcome.result == sending.Result.DELIVERED
    (got,) = receiver.received
    assert got.verified, got.problem
    assert got.event["type"] == "issue.sent"
    assert got.event["data"] == {"issue_id": 7}
    assert got.event["timestamp"].endswith("Z")
    row = delivery(db, delivery_id)
    assert (row.status, row.attempts, row.last_status_code) == (
        WebhookDeliveryStatus.DELIVERED,
        1,
        200,
    )
    assert got.headers["webhook-id"] == row.message_id


def test_a_rolled_back_change_sends_nothing(
    db: Session, endpoint: WebhookEndpoint, queue: InlineWebhookQueue
) -> None:
    events.emit(db, "issue.sent", {"issue_id": 7})
    db.rollback()
    db.commit()
    assert queue.enqueued == []
    assert db.scalar(select(func.count(WebhookDelivery.id))) == 0


def test_only_enabled_endpoints_that_want_the_event_get_it(
    db: Session, hook_settings: Settings, endpoint: WebhookEndpoint, queue: InlineWebhookQueue
) -> None:
    register(db, hook_settings, endpoint.url, events=["issue.sent"])
    off = register(db, hook_settings, endpoint.url)
    off.enabled = False
    db.commit()
    assert len(events.emit(db, "issue.sent", {})) == 2  # the catch-all and the issue.sent one
    assert len(events.emit(db, "subscriber.created", {})) == 1  # the catch-all only


def test_a_receiver_answering_500_twice_gets_retries_with_the_same_id(
    db: Session, endpoint: WebhookEndpoint, receiver: WebhookReceiver, queue: InlineWebhookQueue
) -> None:
    receiver.fail_next = 2
    (delivery_id,) = events.emit(db, "subscriber.confirmed", {"subscriber_id": 1})
    db.commit()

    results = [o.result for o in queue.drain()]
    assert results == [sending.Result.RETRY, sending.Result.RETRY, sending.Result.DELIVERED]
    assert [r.status for r in receiver.received] == [500, 500, 200]
    assert all(r.verified for r in receiver.received)
    assert len({r.headers["webhook-id"] for r in receiver.received}) == 1
    row = delivery(db, delivery_id)
    assert row.status == WebhookDeliveryStatus.DELIVERED
    assert [(a.status_code, a.response_body) for a in row.attempt_rows] == [
        (500, "receiver trouble"),
        (500, "receiver trouble"),
        (200, "ok"),
    ]
    assert db.get_one(WebhookEndpoint, endpoint.id).consecutive_failures == 0


def test_a_delivery_fails_for_good_after_its_last_attempt(
    db: Session, endpoint: WebhookEndpoint, receiver: WebhookReceiver, queue: InlineWebhookQueue
) -> None:
    receiver.fail_next = 10
    (delivery_id,) = events.emit(db, "issue.sent", {})
    db.commit()
    assert [o.result for o in queue.drain()][-1] == sending.Result.FAILED
    assert len(receiver.received) == 3  # webhook_max_attempts
    row = delivery(db, delivery_id)
    assert (row.status, row.attempts, row.next_attempt_at) == (
        WebhookDeliveryStatus.FAILED,
        3,
        None,
    )
    assert row.last_error == "answered HTTP 500"
    assert db.get_one(WebhookEndpoint, endpoint.id).consecutive_failures == 1


def test_the_backoff_grows_fourfold_up_to_its_ceiling() -> None:
    settings = Settings()
    waits = [sending.backoff_seconds(settings, n) for n in range(1, 8)]
    assert waits == [30, 120, 480, 1920, 7680, 21600, 21600]


def test_an_endpoint_is_disabled_after_repeated_failed_deliveries(
    db: Session,
    hook_settings: Settings,
    endpoint: WebhookEndpoint,
    receiver: WebhookReceiver,
    queue: InlineWebhookQueue,
) -> None:
    queue.settings = replace(
        hook_settings, webhook_max_attempts=1, webhook_disable_after_failures=2
    )
    receiver.fail_next = 10
    events.emit(db, "issue.sent", {"issue_id": 1})
    events.emit(db, "issue.sent", {"issue_id": 2})
    db.commit()
    queue.drain()
    db.expire_all()
    row = db.get_one(WebhookEndpoint, endpoint.id)
    assert not row.enabled
    assert row.disabled_reason == "2 deliveries in a row failed; the last: answered HTTP 500"
    assert events.emit(db, "issue.sent", {"issue_id": 3}) == []  # no new events for it


def test_an_endpoint_failing_for_a_day_is_disabled(
    db: Session, endpoint: WebhookEndpoint, receiver: WebhookReceiver, queue: InlineWebhookQueue
) -> None:
    receiver.fail_next = 1
    endpoint.failing_since = utcnow() - timedelta(hours=25)
    (delivery_id,) = events.emit(db, "issue.sent", {})
    db.commit()
    # The retry it schedules finds the endpoint disabled: it waits until it is enabled again.
    assert [o.result for o in queue.drain()] == [sending.Result.RETRY, sending.Result.SKIPPED]
    db.expire_all()
    row = db.get_one(WebhookEndpoint, endpoint.id)
    assert not row.enabled
    assert row.disabled_reason.startswith("no attempt succeeded for 24 hours")
    assert delivery(db, delivery_id).status == WebhookDeliveryStatus.PENDING


def test_no_delivery_to_a_loopback_address_by_default(
    db: Session,
    hook_settings: Settings,
    endpoint: WebhookEndpoint,
    receiver: WebhookReceiver,
    queue: InlineWebhookQueue,
) -> None:
    queue.settings = replace(hook_settings, webhook_allow_private_networks=False)
    (delivery_id,) = events.emit(db, "issue.sent", {})
    db.commit()
    (outcome,) = queue.drain()
    assert outcome.result == sending.Result.FAILED  # at once: trying again is refused again
    assert receiver.received == []
    row = delivery(db, delivery_id)
    assert row.status == WebhookDeliveryStatus.FAILED
    assert row.attempts == 1
    assert row.last_error.startswith("refused: 127.0.0.1 is a loopback address")
    assert "NEWSLETTER_WEBHOOK_ALLOW_PRIVATE_NETWORKS=true" in row.last_error


def test_a_duplicate_or_early_task_makes_no_second_attempt(
    db: Session, endpoint: WebhookEndpoint, receiver: WebhookReceiver, queue: InlineWebhookQueue
) -> None:
    (delivery_id,) = events.emit(db, "issue.sent", {})
    db.commit()
    queue.enqueued.append((delivery_id, 0))  # the same task twice
    results = [o.result for o in queue.drain()]
    assert results == [sending.Result.DELIVERED, sending.Result.SKIPPED]
    assert len(receiver.received) == 1


def test_the_sweep_enqueues_what_is_overdue_once_and_far_retries_wait_for_it(
    db: Session,
    hook_settings: Settings,
    endpoint: WebhookEndpoint,
    receiver: WebhookReceiver,
    queue: InlineWebhookQueue,
) -> None:
    queue.settings = replace(hook_settings, webhook_retry_base_seconds=3600)
    receiver.fail_next = 1
    (delivery_id,) = events.emit(db, "issue.sent", {})
    db.commit()
    (outcome,) = queue.drain()
    assert outcome.retry_in == 3600
    assert queue.enqueued == []  # an hour off: no countdown message, the sweep will find it

    now = utcnow()
    assert sending.sweep(db, queue, now) == 0  # not due yet
    later = now + timedelta(seconds=3600) + sending.SWEEP_GRACE
    assert sending.sweep(db, queue, later) == 1
    assert queue.enqueued == [(delivery_id, 0)]
    assert sending.sweep(db, queue, later + timedelta(seconds=30)) == 0  # not again each tick
    assert sending.sweep(db, queue, later + sending.SWEEP_REPEAT) == 1  # its message was lost


def test_a_pending_delivery_of_a_disabled_endpoint_is_not_swept(
    db: Session, endpoint: WebhookEndpoint, queue: InlineWebhookQueue
) -> None:
    events.emit(db, "issue.sent", {})
    db.commit()
    endpoint.enabled = False
    db.commit()
    assert sending.sweep(db, queue, utcnow() + timedelta(hours=1)) == 0


def test_each_attempt_is_recorded_with_its_time_and_duration(
    db: Session, endpoint: WebhookEndpoint, queue: InlineWebhookQueue
) -> None:
    events.emit(db, "issue.sent", {})
    db.commit()
    queue.drain()
    (attempt,) = db.scalars(select(WebhookAttempt)).all()
    assert attempt.status_code == 200 and attempt.error == ""
    assert attempt.duration_ms >= 0
    assert attempt.attempted_at <= utcnow()


def test_finished_deliveries_are_pruned_after_the_retention(
    db: Session, endpoint: WebhookEndpoint, queue: InlineWebhookQueue
) -> None:
    (done,) = events.emit(db, "issue.sent", {})
    db.commit()
    queue.drain()
    events.emit(db, "issue.sent", {})  # pending: never pruned
    db.commit()
    later = utcnow() + sending.RETENTION + timedelta(minutes=1)
    assert sending.prune(db, utcnow()) == 0
    assert sending.prune(db, later) == 1
    db.commit()
    assert [d.id for d in db.scalars(select(WebhookDelivery))] == [done + 1]
    assert db.scalars(select(WebhookAttempt)).all() == []


class BrokerAway:
    """A WebhookQueue whose broker cannot be reached."""

    def deliver(self, delivery_id: int, countdown: float = 0) -> None:
        """Fail as kombu does when the broker is down."""
        raise ConnectionRefusedError("[Errno 111] Connection refused")


def test_a_broker_that_is_away_fails_no_commit_and_the_sweep_sends_later(
    db: Session, hook_settings: Settings, endpoint: WebhookEndpoint, queue: InlineWebhookQueue
) -> None:
    enqueue_after_commit(get_sessionmaker(hook_settings.database_url), BrokerAway())
    with get_sessionmaker(hook_settings.database_url)() as session:
        (delivery_id,) = events.emit(session, "issue.sent", {})
        session.commit()  # does not raise: the change is committed, the event with it
    assert delivery(db, delivery_id).status == WebhookDeliveryStatus.PENDING
    assert sending.sweep(db, queue, utcnow() + sending.SWEEP_GRACE) == 1
    assert [o.result for o in queue.drain()] == [sending.Result.DELIVERED]


def test_the_send_pipelines_own_connection_enqueues_what_it_emits(
    hook_settings: Settings, endpoint: WebhookEndpoint, queue: InlineWebhookQueue
) -> None:
    # A batch's session is bound to its own connection; issue.sent is emitted there.
    with batch_connection(hook_settings) as (session, _recorder):
        (delivery_id,) = events.emit(session, "issue.sent", {})
        session.commit()
    assert queue.enqueued == [(delivery_id, 0)]
