"""A signup as a queued request: the web enqueues it as submitted, a worker records and answers it.

The web request validates the form (address, name, lists) and the per-inbox limit, then enqueues
one ``process_signup`` task through the :class:`~newsletter.readers.mail_queue.MailQueue` port.
It reads and writes nothing about the address, so its database work, its timing and its answer
are the same for a new, pending, confirmed, unsubscribed, bounced or suppressed address. Only the
worker looks at the address's state: :func:`process_signup` runs
:func:`~newsletter.readers.signup.subscribe`, commits, then queues the mail the signup leads to
(confirmation or "already subscribed"), whose own tasks re-check the suppression list and the
daily cap and retry on their own.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from newsletter.readers.mail_queue import MailQueue
from newsletter.readers.signup import Signup, SignupAction, SignupResult, subscribe
from newsletter.readers.signup_mails import enqueue_signup_mail
from newsletter.readers.subscriptions import SubscriptionError
from newsletter.settings import Settings

log = logging.getLogger(__name__)


def signup_request(signup: Signup, now: datetime) -> dict[str, Any]:
    """A signup and the time it was submitted, as JSON-serialisable task arguments."""
    data = asdict(signup)
    data["newsletter_ids"] = list(signup.newsletter_ids)
    data["now"] = now.isoformat()
    return data


def read_signup_request(data: Mapping[str, Any]) -> tuple[Signup, datetime]:
    """The signup and its submission time back from :func:`signup_request`'s form."""
    signup = Signup(
        email=str(data["email"]),
        newsletter_ids=tuple(int(i) for i in data["newsletter_ids"]),
        name=str(data.get("name", "")),
        source=str(data.get("source", "")),
        ip=str(data.get("ip", "")),
        user_agent=str(data.get("user_agent", "")),
        consent_text=str(data.get("consent_text", "")),
        consent_version=str(data.get("consent_version", "")),
    )
    return signup, datetime.fromisoformat(str(data["now"]))


def process_signup(
    session: Session, settings: Settings, queue: MailQueue, data: Mapping[str, Any]
) -> SignupResult:
    """Record a queued signup, commit, then queue the mail it leads to (the worker's half).

    A signup the web accepted can still fail here, e.g. when a chosen list was deleted in between;
    it is then dropped with a log line, as nobody is waiting for an answer.
    """
    signup, now = read_signup_request(data)
    try:
        result = subscribe(session, settings, signup, now)
    except SubscriptionError as exc:
        session.rollback()
        log.info("queued signup dropped: %s", exc)
        return SignupResult(SignupAction.NONE)
    session.commit()
    enqueue_signup_mail(queue, result)
    return result
