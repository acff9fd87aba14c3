"""Thin Celery tasks: they carry ids, call into newsletter/, and are safe to run twice.

Tasks are declared with ``shared_task`` so this module never imports an app object.
"""

from __future__ import annotations

import logging

from celery import Task, shared_task
from flask import current_app

from newsletter.db import session_scope
from newsletter.mail.transport import TemporaryFailure
from newsletter.settings import Settings

log = logging.getLogger(__name__)


def settings() -> Settings:
    """Settings of the Flask app the task runs in."""
    value: Settings = current_app.extensions["newsletter.settings"]
    return value


@shared_task(name="newsletter.ingest_feeds")
def ingest_feeds() -> dict[str, int]:
    """Ingest every due feed; one failing feed is recorded on its row and never stops the rest."""
    from newsletter.feeds import ingest_due_feeds

    with session_scope(settings().database_url) as session:
        results = ingest_due_feeds(session, settings())
    summary = {
        "feeds": len(results),
        "failed": sum(1 for r in results if not r.ok),
        "created": sum(r.created for r in results),
        "updated": sum(r.updated for r in results),
    }
    if results:
        log.info("feeds ingested: %s", summary)
    return summary

# --- reader flows: signup mails and pending purge (newsletter.subscriptions / notifications) ---


@shared_task(
    name="newsletter.send_confirmation",
    bind=True,
    acks_late=True,
    autoretry_for=(TemporaryFailure,),
    retry_backoff=True,
    retry_jitter=True,
    max_retries=8,
)
def send_confirmation(self: Task, consent_id: int) -> str:
    """Mail the double opt-in link of one consent record."""
    from newsletter import notifications

    with session_scope(settings().database_url) as session:
        result = notifications.send_confirmation(
            session, settings(), current_app.jinja_env, consent_id
        )
    return result.outcome.value


@shared_task(
    name="newsletter.send_welcome",
    bind=True,
    acks_late=True,
    autoretry_for=(TemporaryFailure,),
    retry_backoff=True,
    retry_jitter=True,
    max_retries=8,
)
def send_welcome(self: Task, subscriber_id: int, newsletter_ids: list[int]) -> str:
    """Welcome a reader to the lists they just confirmed."""
    from newsletter import notifications

    with session_scope(settings().database_url) as session:
        result = notifications.send_welcome(
            session, settings(), current_app.jinja_env, subscriber_id, newsletter_ids
        )
    return result.outcome.value


@shared_task(
    name="newsletter.send_already_subscribed",
    bind=True,
    acks_late=True,
    autoretry_for=(TemporaryFailure,),
    retry_backoff=True,
    retry_jitter=True,
    max_retries=8,
)
def send_already_subscribed(self: Task, subscriber_id: int) -> str:
    """Tell a confirmed reader who signed up again that nothing needs doing."""
    from newsletter import notifications

    with session_scope(settings().database_url) as session:
        result = notifications.send_already_subscribed(
            session, settings(), current_app.jinja_env, subscriber_id
        )
    return result.outcome.value


@shared_task(name="newsletter.purge_pending", bind=True, acks_late=True, max_retries=0)
def purge_pending(self: Task) -> dict[str, int]:
    """Hourly: forget signups nobody confirmed within NEWSLETTER_CONFIRM_EXPIRY_DAYS."""
    from newsletter.subscriptions import purge_pending as purge

    with session_scope(settings().database_url) as session:
        result = purge(session, settings())
    summary = {
        "subscribers": result.subscribers,
        "subscriptions": result.subscriptions,
        "consent_records": result.consent_records,
        "mail_log": result.mail_log,
    }
    if any(summary.values()):
        log.info("purged unconfirmed signups: %s", summary)
    return summary

