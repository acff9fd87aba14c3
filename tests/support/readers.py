"""Reader-flow test helpers: lists, subscribers in each state, captured mail, row counts."""

from __future__ import annotations

import email
import email.policy
import re
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsletter.readers.addresses import email_key, normalise
from newsletter.readers.confirmation import confirm, read_confirmation
from newsletter.readers.newsletters import create_newsletter
from newsletter.readers.signup import Signup, confirm_token_for
from newsletter.settings import Settings
from newsletter.store.db import Base, utcnow
from newsletter.store.models import (
    Frequency,
    Newsletter,
    NewsletterKind,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
)

URL_RE = re.compile(r"https?://[^\s<>\"]+")


@dataclass
class Lists:
    """The lists most tests use."""

    daily: Newsletter
    weekly: Newsletter
    offers: Newsletter
    private: Newsletter


def make_lists(db: Session) -> Lists:
    """Three public lists (two digests, one campaign list) and one private list."""
    private = create_newsletter(db, "staff", "Staff memo", public=False)
    daily = create_newsletter(
        db,
        "daily",
        "Morning Briefing",
        description="The day's top stories at 7am.",
        categories=["World", "Politics"],
    )
    weekly = create_newsletter(
        db,
        "weekend",
        "Weekend Reads",
        description="Long reads for Saturday.",
        frequency=Frequency.WEEKLY,
    )
    offers = create_newsletter(
        db,
        "offers",
        "Offers & Announcements",
        description="Subscriber deals and events.",
        kind=NewsletterKind.CAMPAIGN,
    )
    db.commit()
    return Lists(daily, weekly, offers, private)


def add_subscriber(
    db: Session,
    address: str,
    status: SubscriberStatus,
    lists: list[Newsletter],
    sub_status: SubscriptionStatus | None = None,
    name: str = "",
) -> Subscriber:
    """A reader in a given state, on the given lists."""
    now = utcnow()
    normalised = normalise(address)
    subscriber = Subscriber(
        email=normalised,
        email_key=email_key(normalised),
        name=name,
        status=status,
        confirmed_at=now if status != SubscriberStatus.PENDING else None,
    )
    db.add(subscriber)
    db.flush()
    default = {
        SubscriberStatus.ACTIVE: SubscriptionStatus.ACTIVE,
        SubscriberStatus.PENDING: SubscriptionStatus.PENDING,
        SubscriberStatus.UNSUBSCRIBED: SubscriptionStatus.UNSUBSCRIBED,
        SubscriberStatus.BOUNCED: SubscriptionStatus.ACTIVE,
    }[status]
    for newsletter in lists:
        state = sub_status or default
        db.add(
            Subscription(
                subscriber_id=subscriber.id,
                newsletter_id=newsletter.id,
                status=state,
                frequency=newsletter.default_frequency,
                confirmed_at=now if state != SubscriptionStatus.PENDING else None,
                unsubscribed_at=now if state == SubscriptionStatus.UNSUBSCRIBED else None,
            )
        )
    db.commit()
    return subscriber


def row_counts(db: Session) -> dict[str, int]:
    """Rows in every table: "the database is unchanged" means this dict is unchanged."""
    db.expire_all()
    return {
        table.name: int(db.scalar(select(func.count()).select_from(table)) or 0)
        for table in Base.metadata.sorted_tables
    }


def csrf_token(client: FlaskClient, path: str = "/") -> str:
    """The CSRF token of the signup form (Flask-WTF keeps it in the session cookie)."""
    html = client.get(path).get_data(as_text=True)
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the page has no CSRF token"
    return match.group(1)


def mails(settings: Settings) -> list[EmailMessage]:
    """Every captured mail, oldest first, parsed."""
    folder = settings.mail_capture_dir
    assert folder is not None
    if not folder.exists():
        return []
    out: list[EmailMessage] = []
    for path in sorted(Path(folder).glob("*.eml")):
        msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        out.append(msg)
    return out


def mails_to(settings: Settings, address: str) -> list[EmailMessage]:
    """Captured mails to one address (by the To header, case-insensitively)."""
    return [m for m in mails(settings) if address.lower() in str(m["To"]).lower()]


def text_part(msg: EmailMessage) -> str:
    """The text/plain body."""
    part = msg.get_body(("plain",))
    assert part is not None
    return str(part.get_content())  # type: ignore[attr-defined]


def html_part(msg: EmailMessage) -> str:
    """The text/html body."""
    part = msg.get_body(("html",))
    assert part is not None
    return str(part.get_content())  # type: ignore[attr-defined]


def link_in(msg: EmailMessage, path_prefix: str) -> str:
    """The first URL in the text part whose path starts with ``path_prefix`` (e.g. /confirm/)."""
    for url in URL_RE.findall(text_part(msg)):
        if path_prefix in url:
            return url
    raise AssertionError(f"no {path_prefix} link in:\n{text_part(msg)}")


def path_of(url: str) -> str:
    """The path of an absolute URL, for the test client."""
    return "/" + url.split("://", 1)[1].split("/", 1)[1]


def signup_for(address: str, *newsletter_ids: int, name: str = "") -> Signup:
    """A signup as the form would make it, for these lists."""
    return Signup(
        email=address,
        newsletter_ids=tuple(newsletter_ids),
        name=name,
        source="/",
        ip="203.0.113.9",
        user_agent="pytest",
        consent_text="I agree.",
        consent_version="v-test",
    )


def subs_of(db: Session, subscriber_id: int) -> dict[int, Subscription]:
    """A reader's subscription rows by newsletter id, freshly read."""
    db.expire_all()
    rows = db.scalars(select(Subscription).where(Subscription.subscriber_id == subscriber_id))
    return {s.newsletter_id: s for s in rows}


def confirm_signup(db: Session, settings: Settings, consent_id: int) -> tuple[int, tuple[int, ...]]:
    """Confirm a consent record through its real link; (reader id, lists activated)."""
    token = confirm_token_for(settings, db, consent_id)
    assert token
    result = confirm(db, read_confirmation(db, settings, token), ip="198.51.100.1", user_agent="UA")
    db.commit()
    return result.subscriber_id, result.activated
