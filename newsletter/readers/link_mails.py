"""Mails a reader asks for from the preferences page: fresh links, and the link to their data.

Both go to the reader's own address only, and count towards the address's daily cap on mails a
web request can trigger (:func:`~newsletter.readers.signup.signup_mails_sent`), so a forwarded
link cannot be used to flood the inbox.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from jinja2 import Environment
from sqlalchemy.orm import Session

from newsletter.readers import links
from newsletter.readers.signup import log_signup_mail, signup_mails_sent
from newsletter.readers.tokens import DATA_SECONDS
from newsletter.readers.transactional import (
    MailOutcome,
    MailResult,
    active_subscriptions,
    blocked,
    manage_context,
    reader_list_headers,
    send_mail,
)
from newsletter.settings import Settings
from newsletter.store.db import utcnow
from newsletter.store.models import Subscriber

log = logging.getLogger(__name__)


def send_manage_link(
    session: Session,
    settings: Settings,
    env: Environment,
    subscriber_id: int,
    now: datetime | None = None,
) -> MailResult:
    """Mail a reader the new preferences link after they logged out all older ones."""
    return _send(session, settings, env, subscriber_id, "links_renewed", now)


def send_data_link(
    session: Session,
    settings: Settings,
    env: Environment,
    subscriber_id: int,
    now: datetime | None = None,
) -> MailResult:
    """Mail a reader the one-hour link to everything we hold about them."""
    return _send(session, settings, env, subscriber_id, "your_data", now)


def _context(settings: Settings, subscriber: Subscriber, template: str) -> dict[str, Any]:
    """What each of the two mails says, and why it came."""
    asked = "to log out all links" if template == "links_renewed" else "for the data we hold"
    context = manage_context(settings, subscriber) | {
        "reason": (
            f"You are getting this mail because someone with a link to your "
            f"{settings.site_name} preferences asked {asked} about this address."
        ),
    }
    if template == "your_data":
        context |= {
            "data_url": links.data_url(settings, subscriber),
            "valid_minutes": DATA_SECONDS // 60,
        }
    return context


def _send(
    session: Session,
    settings: Settings,
    env: Environment,
    subscriber_id: int,
    template: str,
    now: datetime | None,
) -> MailResult:
    """Check the reader, send one of the two mails, count it towards the daily cap."""
    subscriber, refusal = _recipient(session, settings, subscriber_id, now)
    if subscriber is None:
        return refusal
    rows = active_subscriptions(session, subscriber.id)
    headers = reader_list_headers(settings, subscriber, rows) if rows else {}
    context = _context(settings, subscriber, template)
    outcome = send_mail(settings, env, template, subscriber.email, context, headers)
    log_signup_mail(session, settings, subscriber.email, template[:20], now)
    return MailResult(outcome, subscriber.email)


def _recipient(
    session: Session, settings: Settings, subscriber_id: int, now: datetime | None
) -> tuple[Subscriber | None, MailResult]:
    """The reader to mail, or None and why not (gone, blocked, capped for today)."""
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None:
        return None, MailResult(MailOutcome.GONE)
    if blocked(session, subscriber):
        return None, MailResult(MailOutcome.SUPPRESSED)
    sent_today = signup_mails_sent(session, settings, subscriber.email, now or utcnow())
    if sent_today >= settings.signup_mails_per_day:
        log.info("daily mail cap reached; link mail for subscriber %s not sent", subscriber_id)
        return None, MailResult(MailOutcome.CAPPED)
    return subscriber, MailResult(MailOutcome.SENT, subscriber.email)
