"""Thin Celery tasks: they carry ids, call into newsletter/, and are safe to run twice.

Tasks are declared with ``shared_task`` so this module never imports an app object.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded
from flask import current_app

from newsletter.content.feeds import due_feeds, fail_feed, ingest_due_feed
from newsletter.delivery.batches import DatabaseLost, send_batch
from newsletter.delivery.fan_out import advance
from newsletter.delivery.tick import tick as run_tick
from newsletter.hooks import sending as webhook_sending
from newsletter.mail.transport import TemporaryFailure
from newsletter.readers import link_mails, signup_mails, signup_requests
from newsletter.readers.purge import purge_pending as purge
from newsletter.settings import Settings
from newsletter.store.db import CONNECTION_LOST, session_scope

log = logging.getLogger(__name__)


def settings() -> Settings:
    """Settings of the Flask app the task runs in."""
    value: Settings = current_app.extensions["newsletter.settings"]
    return value


# One feed a task: a slow or hostile feed holds up no other, and its time limit is its own.
# A fetch ends within NEWSLETTER_FEED_TIMEOUT_SECONDS; parsing and storing take seconds more.
FEED_SOFT_TIME_LIMIT = 120
FEED_TIME_LIMIT = 150


@shared_task(name="newsletter.ingest_feeds", acks_late=True)
def ingest_feeds() -> dict[str, int]:
    """Beat's job: enqueue one ingest_feed task per due feed (configured feeds registered first)."""

    with session_scope(settings().database_url) as session:
        feed_ids = due_feeds(session, settings())
    for feed_id in feed_ids:
        ingest_feed.delay(feed_id)
    if feed_ids:
        log.info("feeds due: %d ingest tasks enqueued", len(feed_ids))
    return {"feeds": len(feed_ids)}


@shared_task(
    name="newsletter.ingest_feed",
    acks_late=True,
    soft_time_limit=FEED_SOFT_TIME_LIMIT,
    time_limit=FEED_TIME_LIMIT,
)
def ingest_feed(feed_id: int) -> dict[str, object]:
    """Ingest one due feed; a feed already taken (a duplicate task, an overlap) is skipped."""

    with session_scope(settings().database_url) as session:
        try:
            result = ingest_due_feed(session, settings(), feed_id, reraise=(SoftTimeLimitExceeded,))
        except SoftTimeLimitExceeded:
            session.rollback()
            result = fail_feed(
                session,
                settings(),
                feed_id,
                f"stopped: ingesting took longer than {FEED_SOFT_TIME_LIMIT} seconds",
            )
    if result is None:
        return {"feed": feed_id, "skipped": True}
    if result.ok:
        log.info("feed %s", result.describe())
    return {
        "feed": feed_id,
        "ok": result.ok,
        "created": result.created,
        "updated": result.updated,
    }


# --- reader flows: signups, signup mails and pending purge (newsletter.readers) ---

# A signup mail is retried on SMTP 4xx and connection trouble, and while the database is away,
# with exponential backoff (at most a minute apart) and jitter, for about half an hour; acks_late
# so a task cut short by a dead worker is redelivered: a second signup mail is harmless.
SIGNUP_MAIL_TASK: dict[str, Any] = {
    "bind": True,
    "acks_late": True,
    "autoretry_for": (TemporaryFailure, *CONNECTION_LOST),
    "retry_backoff": True,
    "retry_backoff_max": 60,
    "retry_jitter": True,
    "max_retries": 35,
}


# A signup redelivered after a dead worker is recorded twice: one more consent record and at most
# one more confirmation (under the daily cap), so it is retried like the rest when the database is.
@shared_task(
    name="newsletter.process_signup",
    bind=True,
    acks_late=True,
    autoretry_for=CONNECTION_LOST,
    retry_backoff=True,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=35,
)
def process_signup(self: Task, signup: dict[str, Any]) -> str:
    """Record a submitted signup and queue the mail it leads to (the web only validated it)."""

    with session_scope(settings().database_url) as session:
        result = signup_requests.process_signup(session, settings(), CeleryMailQueue(), signup)
    return result.action.value


@shared_task(
    name="newsletter.send_confirmation",
    **SIGNUP_MAIL_TASK,
)
def send_confirmation(self: Task, consent_id: int) -> str:
    """Mail the double opt-in link of one consent record."""

    with session_scope(settings().database_url) as session:
        result = signup_mails.send_confirmation(
            session, settings(), current_app.jinja_env, consent_id
        )
    return result.outcome.value


@shared_task(
    name="newsletter.send_welcome",
    **SIGNUP_MAIL_TASK,
)
def send_welcome(self: Task, subscriber_id: int, newsletter_ids: list[int]) -> str:
    """Welcome a reader to the lists they just confirmed."""

    with session_scope(settings().database_url) as session:
        result = signup_mails.send_welcome(
            session, settings(), current_app.jinja_env, subscriber_id, newsletter_ids
        )
    return result.outcome.value


@shared_task(
    name="newsletter.send_already_subscribed",
    **SIGNUP_MAIL_TASK,
)
def send_already_subscribed(self: Task, subscriber_id: int) -> str:
    """Tell a confirmed reader who signed up again that nothing needs doing."""

    with session_scope(settings().database_url) as session:
        result = signup_mails.send_already_subscribed(
            session, settings(), current_app.jinja_env, subscriber_id
        )
    return result.outcome.value


@shared_task(
    name="newsletter.send_manage_link",
    **SIGNUP_MAIL_TASK,
)
def send_manage_link(self: Task, subscriber_id: int) -> str:
    """Mail a reader the new preferences link after "log out all links"."""

    with session_scope(settings().database_url) as session:
        result = link_mails.send_manage_link(
            session, settings(), current_app.jinja_env, subscriber_id
        )
    return result.outcome.value


@shared_task(
    name="newsletter.send_data_link",
    **SIGNUP_MAIL_TASK,
)
def send_data_link(self: Task, subscriber_id: int) -> str:
    """Mail a reader the one-hour link to their data."""

    with session_scope(settings().database_url) as session:
        result = link_mails.send_data_link(
            session, settings(), current_app.jinja_env, subscriber_id
        )
    return result.outcome.value


class CeleryMailQueue:
    """The reader path's MailQueue: enqueue the signup and signup mail tasks."""

    def process_signup(self, signup: Mapping[str, Any]) -> None:
        """Enqueue a submitted signup to be recorded by a worker."""
        process_signup.delay(dict(signup))

    def send_confirmation(self, consent_id: int) -> None:
        """Enqueue the double opt-in mail of one consent record."""
        send_confirmation.delay(consent_id)

    def send_already_subscribed(self, subscriber_id: int) -> None:
        """Enqueue the "you are already subscribed" mail."""
        send_already_subscribed.delay(subscriber_id)

    def send_welcome(self, subscriber_id: int, newsletter_ids: Sequence[int]) -> None:
        """Enqueue the welcome mail for the lists just confirmed."""
        send_welcome.delay(subscriber_id, list(newsletter_ids))

    def send_manage_link(self, subscriber_id: int) -> None:
        """Enqueue the mail with a reader's new preferences link."""
        send_manage_link.delay(subscriber_id)

    def send_data_link(self, subscriber_id: int) -> None:
        """Enqueue the mail with the one-hour link to a reader's data."""
        send_data_link.delay(subscriber_id)


@shared_task(name="newsletter.purge_pending", bind=True, acks_late=True, max_retries=0)
def purge_pending(self: Task) -> dict[str, int]:
    """Hourly: forget signups nobody confirmed within NEWSLETTER_CONFIRM_EXPIRY_DAYS, and the
    consent proof of readers erased over NEWSLETTER_ERASED_CONSENT_DAYS ago."""

    with session_scope(settings().database_url) as session:
        result = purge(session, settings())
    summary = {
        "subscribers": result.subscribers,
        "subscriptions": result.subscriptions,
        "consent_records": result.consent_records,
        "mail_log": result.mail_log,
        "erased_consents": result.erased_consents,
    }
    if any(summary.values()):
        log.info("purged unconfirmed signups: %s", summary)
    return summary


# --- dispatch: beat's tick, fan-out and batches (newsletter.issues, newsletter.delivery) ---


class CeleryQueue:
    """The dispatch engine's TaskQueue: enqueue Celery tasks (callers commit first)."""

    def fan_out(self, issue_id: int) -> None:
        """Enqueue the fan-out (or a pump, once fanned out) of a sending issue."""
        fan_out_task.delay(issue_id)

    def send_batch(self, issue_id: int, delivery_ids: list[int]) -> None:
        """Enqueue one batch of delivery ids."""
        send_batch_task.delay(issue_id, delivery_ids)


@shared_task(name="newsletter.tick", acks_late=True)
def tick() -> dict[str, object]:
    """Beat's periodic job: fire due schedules, start due issues, recover and pump sends."""

    report = run_tick(settings(), CeleryQueue())
    if report.fired or report.started or any(report.maintenance.values()):
        log.info("tick: fired %s, started %s, %s", report.fired, report.started, report.maintenance)
    # Webhook deliveries whose message was lost, or whose retry was too far off for a countdown.
    with session_scope(settings().database_url) as session:
        swept = webhook_sending.sweep(session, CeleryWebhookQueue())
        webhook_sending.prune(session)
    if swept:
        log.info("tick: %d webhook deliveries enqueued by the sweep", swept)
    return {
        "fired": report.fired,
        "started": report.started,
        **report.maintenance,
        "webhooks": swept,
    }


# A fan-out of a large list and a batch held to the send rate may run long; their limits only
# stop a task that hangs. (Both resume: a fan-out where it stopped, a batch's leases expire.)
LONG_TASK_LIMITS: dict[str, Any] = {"soft_time_limit": 1800, "time_limit": 1860}


@shared_task(
    name="newsletter.fan_out",
    acks_late=True,
    **LONG_TASK_LIMITS,
    autoretry_for=CONNECTION_LOST,
    retry_backoff=True,
    retry_backoff_max=30,
    retry_jitter=True,
    max_retries=None,  # resumable and idempotent: it waits out a database outage
)
def fan_out_task(issue_id: int) -> None:
    """Create an issue's deliveries (resumable) and start its batches; a rerun adds nothing."""

    advance(settings(), issue_id, CeleryQueue())


# How often a batch cut off from the database tries again: short, so a send carries on within
# seconds of PostgreSQL's return, and cheap (one connection attempt) while it is away.
DATABASE_RETRY_SECONDS = 3


@shared_task(
    name="newsletter.send_batch",
    bind=True,
    acks_late=True,
    **LONG_TASK_LIMITS,
    max_retries=None,  # SMTP outages end; each retry waits up to NEWSLETTER_SEND_RETRY_MAX_SECONDS
)
def send_batch_task(
    self: Task, issue_id: int, delivery_ids: list[int], release: str = ""
) -> dict[str, int]:
    """Send one batch; SMTP 4xx, connection trouble or the rate limit retry it with backoff.

    When the database goes away mid-batch, the task retries every few seconds until it is back,
    first giving back the rows the cut-off run held (``release``), so the send carries on at
    once rather than after their lease.
    """

    try:
        result = send_batch(
            settings(),
            issue_id,
            delivery_ids,
            queue=CeleryQueue(),
            retries=self.request.retries,
            release=release,
        )
    except DatabaseLost as exc:
        log.warning("issue %s: %s; retrying in %s s", issue_id, exc, DATABASE_RETRY_SECONDS)
        raise self.retry(
            args=(issue_id, delivery_ids),
            kwargs={"release": exc.token},
            countdown=DATABASE_RETRY_SECONDS,
            exc=exc,
        ) from exc
    if result.retry_ids:
        raise self.retry(args=(issue_id, result.retry_ids), countdown=result.retry_in)
    return {"sent": result.sent, "failed": result.failed, "skipped": result.skipped}


# --- outbound webhooks (newsletter.hooks) ---

# One POST waits at most NEWSLETTER_WEBHOOK_TIMEOUT_SECONDS (at most 60) to connect and as long
# for each read; the limits only stop an attempt that hangs past that (its lease then expires
# and the sweep tries again, the attempt counted).
WEBHOOK_SOFT_TIME_LIMIT = 150
WEBHOOK_TIME_LIMIT = 170


@shared_task(
    name="newsletter.deliver_webhook",
    acks_late=True,
    soft_time_limit=WEBHOOK_SOFT_TIME_LIMIT,
    time_limit=WEBHOOK_TIME_LIMIT,
    autoretry_for=CONNECTION_LOST,
    retry_backoff=True,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=35,
)
def deliver_webhook(delivery_id: int) -> str:
    """One attempt at a webhook delivery; a duplicate or early task finds it taken and skips."""

    outcome = webhook_sending.deliver(settings(), delivery_id, CeleryWebhookQueue())
    if outcome.result != webhook_sending.Result.SKIPPED:
        log.info(
            "webhook delivery %s: %s%s",
            delivery_id,
            outcome.result,
            f" ({outcome.error})" if outcome.error else "",
        )
    return outcome.result


class CeleryWebhookQueue:
    """The hooks' WebhookQueue: enqueue attempts at deliveries (callers commit first)."""

    def deliver(self, delivery_id: int, countdown: float = 0) -> None:
        """Enqueue one attempt at a delivery, ``countdown`` seconds from now."""
        deliver_webhook.apply_async((delivery_id,), countdown=countdown or None)
