"""Inbound mail for tests: the report samples of tests/data/inbound and a reader we mailed."""

from __future__ import annotations

from pathlib import Path
from string import Template

from newsletter.settings import Settings
from newsletter.store.db import get_sessionmaker, utcnow
from newsletter.store.models import Delivery, DeliveryStatus, Issue, NewsletterKind
from tests.support import dispatching as seed

DATA = Path(__file__).parents[1] / "data" / "inbound"
BOUNCES = "bounces+@news.example.com"
BOB = "bob@example.org"
ALICE = "alice@example.org"


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
