"""Seed data for `newsletter dev`: the four demo newsletters and a sample feed of the site."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.readers.newsletters import create_newsletter
from newsletter.store.models import Frequency, Newsletter, NewsletterKind

# A copy of the site's RSS feed, shipped in the package so `newsletter dev` has posts offline.
DEMO_FEED = Path(__file__).with_name("sample-feed.xml")


@dataclass(frozen=True)
class DemoNewsletter:
    """One newsletter a fresh development database starts with."""

    slug: str
    name: str
    description: str
    kind: NewsletterKind
    frequency: Frequency = Frequency.DAILY


DEMO_NEWSLETTERS: tuple[DemoNewsletter, ...] = (
    DemoNewsletter(
        "daily",
        "Daily digest",
        "The day's most important stories, every morning.",
        NewsletterKind.DIGEST,
        Frequency.DAILY,
    ),
    DemoNewsletter(
        "weekly",
        "Weekly digest",
        "The best reads of the week, every Sunday.",
        NewsletterKind.DIGEST,
        Frequency.WEEKLY,
    ),
    DemoNewsletter(
        "offers",
        "Offers",
        "Subscriber discounts and deals from us and our partners.",
        NewsletterKind.CAMPAIGN,
    ),
    DemoNewsletter(
        "announcements",
        "Special announcements",
        "Rare news about the site itself: new sections, events and changes.",
        NewsletterKind.CAMPAIGN,
    ),
)


def seed_newsletters(db: Session) -> list[str]:
    """Create the demo newsletters that are missing (by slug); return the slugs created."""
    existing = set(db.scalars(select(Newsletter.slug)))
    created: list[str] = []
    for demo in DEMO_NEWSLETTERS:
        if demo.slug in existing:
            continue
        create_newsletter(
            db,
            demo.slug,
            demo.name,
            description=demo.description,
            kind=demo.kind,
            frequency=demo.frequency,
        )
        created.append(demo.slug)
    return created
