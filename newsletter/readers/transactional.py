"""What every transactional mail to one reader shares: its outcome, the rules, links and sending.

The signup mails (:mod:`~newsletter.readers.signup_mails`) and the link mails
(:mod:`~newsletter.readers.link_mails`) are built on these: each loads its rows by id, asks
:func:`blocked`, renders ``templates/email/NAME.{html,txt}`` with :func:`send_mail`, and answers
with a :class:`MailResult`.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import Any

from jinja2 import Environment
from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.mail.compose import Envelope, bare_address, build_message, render_pair
from newsletter.mail.transport import PermanentFailure, get_transport
from newsletter.readers import links
from newsletter.readers.list_headers import list_headers
from newsletter.readers.subscriptions import subscriptions_of
from newsletter.readers.suppression import is_suppressed
from newsletter.settings import Settings
from newsletter.store.models import (
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


def blocked(session: Session, subscriber: Subscriber) -> bool:
    """True when nothing may be mailed to this reader (bounced, or on the never-mail list)."""
    return subscriber.status == SubscriberStatus.BOUNCED or is_suppressed(session, subscriber.email)


def active_subscriptions(
    session: Session, subscriber_id: int
) -> list[tuple[Subscription, Newsletter]]:
    """The reader's active subscriptions with their lists, in list order."""
    return [
        (s, n)
        for s, n in subscriptions_of(session, subscriber_id)
        if s.status == SubscriptionStatus.ACTIVE
    ]


def newsletters_by_slugs(session: Session, slugs: list[str]) -> list[dict[str, str]]:
    """Name and description of these lists, in list order (what a confirmation mail names)."""
    rows = session.scalars(
        select(Newsletter).where(Newsletter.slug.in_(slugs)).order_by(Newsletter.position)
    )
    return [{"name": n.name, "description": n.description} for n in rows]


def describe(sub: Subscription, newsletter: Newsletter) -> dict[str, Any]:
    """What a mail says about one list."""
    return {
        "name": newsletter.name,
        "description": newsletter.description,
        "frequency": sub.frequency.value if newsletter.kind.value == "digest" else "",
        "paused_until": sub.paused_until,
    }


def manage_context(settings: Settings, subscriber: Subscriber) -> dict[str, Any]:
    """The preferences and "leave all" links every mail to a subscribed reader carries."""
    claim = links.subscriber_claim(subscriber)
    return {
        "preferences_url": links.preferences_url(settings, claim),
        "unsubscribe_url": links.unsubscribe_url(settings, claim),
    }


def reader_list_headers(
    settings: Settings, subscriber: Subscriber, rows: list[tuple[Subscription, Newsletter]]
) -> dict[str, str]:
    """List headers of the reader's first list; the one-click link leaves all lists."""
    first = rows[0][1]
    return list_headers(
        settings,
        links.subscriber_claim(subscriber),
        newsletter_slug=first.slug,
        newsletter_name=first.name,
    )


def send_mail(
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
