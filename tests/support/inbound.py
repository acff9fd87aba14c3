"""Inbound mail for tests: the report samples of tests/data/inbound, a World that sends real
campaigns through our dispatch to an SMTP sink, and a reader we mailed written directly."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from string import Template
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsletter.inbound.processing import Outcome, process_message
from newsletter.issues import lifecycle
from newsletter.issues.rendering import envelope_sender
from newsletter.settings import Settings
from newsletter.store.db import get_sessionmaker, utcnow
from newsletter.store.models import (
    Delivery,
    DeliveryStatus,
    FeedbackEvent,
    Issue,
    Newsletter,
    NewsletterKind,
    Subscriber,
    Subscription,
    Suppression,
    UnmatchedReport,
)
from tests.support import dispatching as seed
from tests.support.smtp import Received, SMTPSink
from tests.support.worker import base_env

DATA = Path(__file__).parents[1] / "data" / "inbound"
BOUNCES = "bounces+@news.example.com"
BOB = "bob@example.org"
ALICE = "alice@example.org"
CAROL = "carol@example.org"


def sending(settings: Settings, sink: SMTPSink) -> Settings:
    """Settings that send to the sink with a VERP bounce address (and no auto-pause in the way)."""
    return replace(
        settings,
        smtp_url=sink.url,
        smtp_timeout=5.0,
        bounce_address=BOUNCES,
        autopause_min_attempts=10_000,
    )


def command_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a `newsletter` subprocess on these settings' database, with VERP."""
    return base_env(
        NEWSLETTER_ENV="testing",
        NEWSLETTER_DATA_DIR=str(settings.data_dir),
        NEWSLETTER_DATABASE_URL=settings.database_url,
        NEWSLETTER_SECRET_KEY=settings.secret_key,
        NEWSLETTER_BOUNCE_ADDRESS=BOUNCES,
        **extra,
    )


def sample(name: str, **values: str) -> bytes:
    """A sample from tests/data/inbound with its $placeholders filled in."""
    text = (DATA / name).read_text()
    return Template(text).safe_substitute(values).encode()


def seed_mailed(settings: Settings) -> tuple[int, int, str]:
    """A reader on one list with one sent delivery, written directly: (issue, reader, msgid)."""
    session = get_sessionmaker(settings.database_url)()
    try:
        offers = seed.newsletter(session, "offers", kind=NewsletterKind.CAMPAIGN)
        reader = seed.reader(session, BOB, [offers])
        issue = Issue(newsletter_id=offers.id, kind=NewsletterKind.CAMPAIGN, subject="Offer")
        session.add(issue)
        session.flush()
        session.add(
            Delivery(
                issue_id=issue.id,
                subscriber_id=reader.id,
                status=DeliveryStatus.SENT,
                smtp_code=250,
                message_id="<m1@news.example.com>",
                sent_at=utcnow(),
            )
        )
        session.commit()
        return issue.id, reader.id, "<m1@news.example.com>"
    finally:
        session.close()


@dataclass
class World:
    """Two lists, three readers, and a way to send a campaign for real (needs an app context:
    its Jinja environment renders the mails)."""

    db: Session
    settings: Settings
    sink: SMTPSink
    offers: Newsletter
    weekly: Newsletter

    @classmethod
    def build(cls, db: Session, settings: Settings, sink: SMTPSink) -> World:
        """Offers (alice, bob) and weekly (bob, carol), nothing sent yet."""
        offers = seed.newsletter(db, "offers", kind=NewsletterKind.CAMPAIGN)
        weekly = seed.newsletter(db, "weekly", kind=NewsletterKind.CAMPAIGN)
        seed.reader(db, ALICE, [offers])
        seed.reader(db, BOB, [offers, weekly])
        seed.reader(db, CAROL, [weekly])
        return cls(db, settings, sink, offers, weekly)

    def send(self, newsletter: Newsletter | None = None, subject: str = "Offer") -> int:
        """Send a campaign through the real dispatch path; returns the issue id."""
        before = len(self.sink.messages)
        issue = lifecycle.create_campaign(
            self.db,
            self.settings,
            newsletter or self.offers,
            subject=subject,
            body_html="<p>Half price this week.</p>",
        )
        self.db.commit()
        queue = seed.InlineQueue(self.settings)
        lifecycle.send(self.db, self.settings, issue.id, queue)
        queue.drain()
        assert len(self.sink.messages) > before
        return issue.id

    def mail_to(self, address: str, issue_id: int) -> Received:
        """The mail the sink received for one reader in one issue (by its VERP sender)."""
        sender = envelope_sender(self.settings, issue_id, self.reader(address).id)
        found = [m for m in self.sink.messages if m.mail_from == sender]
        assert len(found) == 1 and found[0].rcpt_tos == [address]
        return found[0]

    def reader(self, address: str) -> Subscriber:
        """A reader, fresh from the database."""
        self.db.expire_all()
        row = self.db.scalar(select(Subscriber).where(Subscriber.email_key == address))
        assert row is not None
        return row

    def delivery(self, address: str, issue_id: int) -> Delivery:
        """One delivery row, fresh."""
        self.db.expire_all()
        row = self.db.scalar(
            select(Delivery).where(
                Delivery.issue_id == issue_id, Delivery.subscriber_id == self.reader(address).id
            )
        )
        assert row is not None
        return row

    def process(self, raw: bytes, **kwargs: Any) -> Outcome:
        """Process one message and commit, as the command does."""
        outcome = process_message(self.db, self.settings, raw, **kwargs)
        self.db.commit()
        return outcome

    def twice(self, raw: bytes, **kwargs: Any) -> Outcome:
        """Process a message, then again: the second run must change nothing."""
        first = self.process(raw, **kwargs)
        state, unmatched = snapshot(self.db), unmatched_reports(self.db)
        second = self.process(raw, **kwargs)
        assert snapshot(self.db) == state and unmatched_reports(self.db) == unmatched
        assert not second.changed and second.result == first.result
        return first


def snapshot(db: Session) -> dict[str, list[tuple[Any, ...]]]:
    """Every row about readers that inbound processing could touch."""
    db.expire_all()
    return {
        "subscribers": [
            (s.id, s.status, s.updated_at) for s in db.scalars(select(Subscriber).order_by("id"))
        ],
        "subscriptions": [
            (s.id, s.status, s.unsubscribed_at)
            for s in db.scalars(select(Subscription).order_by("id"))
        ],
        "deliveries": [
            (d.id, d.status, d.smtp_code, d.smtp_response)
            for d in db.scalars(select(Delivery).order_by("id"))
        ],
        "suppressions": [
            (s.email_hash, s.reason, s.detail) for s in db.scalars(select(Suppression))
        ],
        "feedback": [
            (e.subscriber_id, e.issue_id, e.kind, e.status, e.detail)
            for e in db.scalars(select(FeedbackEvent).order_by("id"))
        ],
    }


def unmatched_reports(db: Session) -> int:
    """How many reports were recorded as unmatched (what ops counts)."""
    db.expire_all()
    return int(db.scalar(select(func.count()).select_from(UnmatchedReport)) or 0)


def lf(raw: bytes) -> str:
    """A sent mail as text with LF line ends, to quote inside a report."""
    return raw.replace(b"\r\n", b"\n").decode("utf-8", "replace").rstrip("\n")


def header_block(raw: bytes) -> str:
    """The header section of a sent mail."""
    return lf(raw).split("\n\n", 1)[0]


def postfix_bounce(
    world: World,
    address: str,
    issue_id: int,
    *,
    name: str = "postfix-5.1.1.eml",
    quote: bool = True,
    email: str | None = None,
) -> bytes:
    """A Postfix DSN for the mail one reader got in one issue, sent to its VERP address."""
    mail = world.mail_to(address, issue_id)
    return sample(
        name,
        verp=mail.mail_from,
        email=email or address,
        original_headers=header_block(mail.data) if quote else "X-Nothing: quoted",
    )
