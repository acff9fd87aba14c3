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

import enum
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jinja2 import Environment
from sqlalchemy.orm import Session

from newsletter.mail.compose import Envelope, bare_address, build_message, render_pair
from newsletter.mail.transport import PermanentFailure, get_transport
from newsletter.readers import links
from newsletter.readers.list_headers import list_headers
from newsletter.readers.mail_queue import MailQueue
from newsletter.readers.signup import (
    SignupAction,
    SignupResult,
    confirm_token_for,
    log_signup_mail,
    signup_mails_sent,
)
from newsletter.readers.subscriptions import subscriptions_of
from newsletter.readers.suppression import is_suppressed
from newsletter.settings import Settings
from newsletter.store.db import utcnow
from newsletter.store.models import (
    ConsentRecord,
    Newsletter,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
)

log = logging.getLogger(__name__)


class MailOutcome(enum.StrEnum):
    """Why a transactional mail was or was not sent."""

    SENT = "sent"
    SUPPRESSED = "suppressed"  # on the never-mail list (or bounced)
    CAPPED = "capped"  # the address had its signup mails for today
    GONE = "gone"  # the rows it was about no longer exist (purged, deleted)
    NOTHING_TO_SAY = "nothing_to_say"  # e.g. a welcome for lists the reader already left
    REJECTED = "rejected"  # the server refused the recipient for good (5xx)


@dataclass(frozen=True)
class MailResult:
    """The outcome of one attempt and to whom it went."""

    outcome: MailOutcome
    recipient: str = ""

    @property
    def sent(self) -> bool:
        """True when a message left."""
        return self.outcome == MailOutcome.SENT


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
    if _blocked(session, subscriber):
        return MailResult(MailOutcome.SUPPRESSED)
    if signup_mails_sent(session, settings, subscriber.email, now) >= settings.signup_mails_per_day:
        log.info("signup mail cap reached; confirmation for consent %s not sent", consent_id)
        return MailResult(MailOutcome.CAPPED)
    token = confirm_token_for(settings, session, consent_id)
    if token is None:
        return MailResult(MailOutcome.GONE)
    newsletters = _by_slugs(session, record.newsletter_slugs)
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
    outcome = _send(settings, env, "confirm", subscriber.email, context, headers={})
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
    if _blocked(session, subscriber):
        return MailResult(MailOutcome.SUPPRESSED)
    rows = _active(session, subscriber.id)
    joined = [(s, n) for s, n in rows if n.id in set(newsletter_ids)]
    if not joined:
        return MailResult(MailOutcome.NOTHING_TO_SAY)
    context = _manage_context(settings, subscriber) | {
        "joined": [_describe(s, n) for s, n in joined],
        "others": [_describe(s, n) for s, n in rows if n.id not in set(newsletter_ids)],
        "name": subscriber.name,
        "reason": (
            f"You are getting this mail because you confirmed your subscription to "
            f"{settings.site_name} newsletters."
        ),
    }
    headers = _headers(settings, subscriber, rows)
    return MailResult(
        _send(settings, env, "welcome", subscriber.email, context, headers), subscriber.email
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
    if _blocked(session, subscriber):
        return MailResult(MailOutcome.SUPPRESSED)
    rows = _active(session, subscriber.id)
    if not rows or subscriber.status != SubscriberStatus.ACTIVE:
        return MailResult(MailOutcome.NOTHING_TO_SAY)
    if signup_mails_sent(session, settings, subscriber.email, now) >= settings.signup_mails_per_day:
        log.info("signup mail cap reached; already-subscribed note not sent")
        return MailResult(MailOutcome.CAPPED)
    context = _manage_context(settings, subscriber) | {
        "newsletters": [_describe(s, n) for s, n in rows],
        "reason": (
            f"You are getting this mail because this address was entered in the signup form "
            f"of {settings.site_name}, and it is already subscribed."
        ),
    }
    headers = _headers(settings, subscriber, rows)
    outcome = _send(settings, env, "already_subscribed", subscriber.email, context, headers)
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


# --- helpers -------------------------------------------------------------------------------------


def _blocked(session: Session, subscriber: Subscriber) -> bool:
    return subscriber.status == SubscriberStatus.BOUNCED or is_suppressed(session, subscriber.email)


def _active(session: Session, subscriber_id: int) -> list[tuple[Subscription, Newsletter]]:
    return [
        (s, n)
        for s, n in subscriptions_of(session, subscriber_id)
        if s.status == SubscriptionStatus.ACTIVE
    ]


def _by_slugs(session: Session, slugs: list[str]) -> list[dict[str, str]]:
    from sqlalchemy import select

    rows = session.scalars(
        select(Newsletter).where(Newsletter.slug.in_(slugs)).order_by(Newsletter.position)
    )
    return [{"name": n.name, "description": n.description} for n in rows]


def _describe(sub: Subscription, newsletter: Newsletter) -> dict[str, Any]:
    """What a mail says about one list."""
    return {
        "name": newsletter.name,
        "description": newsletter.description,
        "frequency": sub.frequency.value if newsletter.kind.value == "digest" else "",
        "paused_until": sub.paused_until,
    }


def _manage_context(settings: Settings, subscriber: Subscriber) -> dict[str, Any]:
    return {
        "preferences_url": links.preferences_url(settings, subscriber.id, subscriber.token_version),
        "unsubscribe_url": links.unsubscribe_url(
            settings, subscriber.id, subscriber.token_version, None
        ),
    }


def _headers(
    settings: Settings, subscriber: Subscriber, rows: list[tuple[Subscription, Newsletter]]
) -> dict[str, str]:
    """List headers of the reader's first list; the one-click link leaves all lists."""
    first = rows[0][1]
    return list_headers(
        settings,
        subscriber_id=subscriber.id,
        token_version=subscriber.token_version,
        newsletter_id=None,
        newsletter_slug=first.slug,
        newsletter_name=first.name,
    )


def _send(
    settings: Settings,
    env: Environment,
    template: str,
    recipient: str,
    context: dict[str, Any],
    headers: dict[str, str],
) -> MailOutcome:
    """Render, build and hand one message to the transport.

    A TemporaryFailure propagates so the task retries with backoff; a permanent refusal is an
    answer, not an error: retrying would not help.
    """
    rendered = render_pair(env, template, {"settings": settings, **context})
    envelope = Envelope(to=recipient, from_=settings.mail_from, headers=headers)
    message = build_message(settings, envelope, rendered)
    sender = settings.bounce_address or bare_address(settings.mail_from)
    try:
        get_transport(settings).send(sender, recipient, message)
    except PermanentFailure as exc:
        log.warning("%s mail refused for good: %s", template, exc)
        return MailOutcome.REJECTED
    return MailOutcome.SENT
