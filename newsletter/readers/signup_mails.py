"""Transactional mails of the signup path: confirmation, welcome and "already subscribed".

Each function loads what it needs by id, re-checks the rules (suppression, the per-inbox daily
cap on signup-triggered mails), renders ``templates/email/NAME.{html,txt}``, and hands the MIME
bytes to the configured transport. Web requests never send: a signup reaches the worker as a
``process_signup`` task (:mod:`newsletter.readers.signup_requests`), which records it and then
enqueues its mail through the :class:`~newsletter.readers.mail_queue.MailQueue` port
(:func:`enqueue_signup_mail`), so the response takes the same time whatever the address's state.

Nothing the signup form let a stranger type (the name) ever goes into a confirmation mail:
otherwise the form would relay arbitrary text to any inbox.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime

from jinja2 import Environment
from sqlalchemy.orm import Session

from newsletter.mail.headers import one_line
from newsletter.readers import links
from newsletter.readers.greeting import first_name
from newsletter.readers.mail_queue import MailQueue
from newsletter.readers.signup import (
    SignupAction,
    SignupResult,
    confirm_token_for,
    log_signup_mail,
    signup_mails_sent,
)
from newsletter.readers.suppression import blocks_signup
from newsletter.readers.transactional import (
    MailOutcome,
    MailResult,
    active_subscriptions,
    blocked,
    describe,
    manage_context,
    newsletters_by_slugs,
    reader_list_headers,
    send_mail,
)
from newsletter.settings import Settings
from newsletter.store.db import utcnow
from newsletter.store.models import ConsentRecord, Subscriber, SubscriberStatus

log = logging.getLogger(__name__)


def send_confirmation(
    session: Session,
    settings: Settings,
    env: Environment,
    consent_id: int,
    now: datetime | None = None,
) -> MailResult:
    """Mail the double opt-in link for one consent record (the lists it names)."""
    now = now or utcnow()
    record = session.get(ConsentRecord, consent_id)
    subscriber = session.get(Subscriber, record.subscriber_id) if record is not None else None
    if record is None or subscriber is None:
        return MailResult(MailOutcome.GONE)
    if record.confirmed_at is not None:
        return MailResult(MailOutcome.NOTHING_TO_SAY)  # confirmed before this task ran
    # An erased reader's suppression lets this one mail through: the new double opt-in.
    if subscriber.status == SubscriberStatus.BOUNCED or blocks_signup(session, subscriber.email):
        return MailResult(MailOutcome.SUPPRESSED)
    if signup_mails_sent(session, settings, subscriber.email, now) >= settings.signup_mails_per_day:
        log.info("signup mail cap reached; confirmation for consent %s not sent", consent_id)
        return MailResult(MailOutcome.CAPPED)
    token = confirm_token_for(settings, session, consent_id)
    if token is None:
        return MailResult(MailOutcome.GONE)
    newsletters = newsletters_by_slugs(session, record.newsletter_slugs)
    context = {
        "confirm_url": links.confirm_url(settings, token),
        "newsletters": newsletters,
        "expiry_days": settings.confirm_expiry_days,
        "reason": (
            f"You are getting this one-time mail because this address was entered in the "
            f"signup form of {settings.site_name}. If that was not you, ignore it: without "
            f"your click you will not hear from us again."
        ),
    }
    # No list headers: the reader is not on a list yet, and no name in To (see module doc).
    outcome = send_mail(settings, env, "confirm", subscriber.email, context, headers={})
    log_signup_mail(session, settings, subscriber.email, "confirm", now)
    return MailResult(outcome, subscriber.email)


def send_welcome(
    session: Session,
    settings: Settings,
    env: Environment,
    subscriber_id: int,
    newsletter_ids: list[int] | tuple[int, ...],
) -> MailResult:
    """Welcome a reader to the lists they just confirmed, with preferences and unsubscribe links."""
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None:
        return MailResult(MailOutcome.GONE)
    if blocked(session, subscriber):
        return MailResult(MailOutcome.SUPPRESSED)
    rows = active_subscriptions(session, subscriber.id)
    joined = [(s, n) for s, n in rows if n.id in set(newsletter_ids)]
    if not joined:
        return MailResult(MailOutcome.NOTHING_TO_SAY)
    context = manage_context(settings, subscriber) | {
        "joined": [describe(s, n) for s, n in joined],
        "others": [describe(s, n) for s, n in rows if n.id not in set(newsletter_ids)],
        "name": subscriber.name,
        "first_name": first_name(one_line(subscriber.name or "")),
        "reason": (
            f"You are getting this mail because you confirmed your subscription to "
            f"{settings.site_name} newsletters."
        ),
    }
    headers = reader_list_headers(settings, subscriber, rows)
    return MailResult(
        send_mail(settings, env, "welcome", subscriber.email, context, headers), subscriber.email
    )


def send_already_subscribed(
    session: Session,
    settings: Settings,
    env: Environment,
    subscriber_id: int,
    now: datetime | None = None,
) -> MailResult:
    """Tell a confirmed reader who signed up again that they already get these mails."""
    now = now or utcnow()
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None:
        return MailResult(MailOutcome.GONE)
    if blocked(session, subscriber):
        return MailResult(MailOutcome.SUPPRESSED)
    rows = active_subscriptions(session, subscriber.id)
    if not rows or subscriber.status != SubscriberStatus.ACTIVE:
        return MailResult(MailOutcome.NOTHING_TO_SAY)
    if signup_mails_sent(session, settings, subscriber.email, now) >= settings.signup_mails_per_day:
        log.info("signup mail cap reached; already-subscribed note not sent")
        return MailResult(MailOutcome.CAPPED)
    context = manage_context(settings, subscriber) | {
        "newsletters": [describe(s, n) for s, n in rows],
        "reason": (
            f"You are getting this mail because this address was entered in the signup form "
            f"of {settings.site_name}, and it is already subscribed."
        ),
    }
    headers = reader_list_headers(settings, subscriber, rows)
    outcome = send_mail(settings, env, "already_subscribed", subscriber.email, context, headers)
    log_signup_mail(session, settings, subscriber.email, "already", now)
    return MailResult(outcome, subscriber.email)


def enqueue_signup_mail(queue: MailQueue, result: SignupResult) -> None:
    """Queue the mail a signup leads to. Call only after the signup was committed."""
    if result.action == SignupAction.CONFIRM and result.consent_id is not None:
        queue.send_confirmation(result.consent_id)
    elif result.action == SignupAction.ALREADY_SUBSCRIBED and result.subscriber_id is not None:
        queue.send_already_subscribed(result.subscriber_id)


def enqueue_welcome(queue: MailQueue, subscriber_id: int, newsletter_ids: Sequence[int]) -> None:
    """Queue the welcome mail after a confirmation was committed."""
    if newsletter_ids:
        queue.send_welcome(subscriber_id, list(newsletter_ids))
