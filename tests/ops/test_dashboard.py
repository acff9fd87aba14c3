"""The dashboard's numbers, from rows written as the service writes them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from newsletter.ops.dashboard import (
    daily_counts,
    day_starts,
    feed_health,
    last_sends,
    list_counts,
    upcoming,
)
from newsletter.store.models import (
    Delivery,
    DeliveryStatus,
    Feed,
    Issue,
    IssueStatus,
    Newsletter,
    NewsletterKind,
    Schedule,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
)

NOW = datetime(2026, 3, 31, 12, 0, tzinfo=UTC)


def days_ago(n: int) -> datetime:
    return NOW.replace(hour=9) - timedelta(days=n)


@dataclass
class World:
    daily: Newsletter
    offers: Newsletter
    readers: list[Subscriber]


def reader(db: Session, n: int) -> Subscriber:
    row = Subscriber(email=f"r{n}@example.com", email_key=f"r{n}@example.com")
    row.status = SubscriberStatus.ACTIVE
    db.add(row)
    db.flush()
    return row


def subscribe(
    db: Session,
    who: Subscriber,
    newsletter: Newsletter,
    confirmed: datetime | None,
    left: datetime | None = None,
) -> None:
    status = SubscriptionStatus.PENDING
    if confirmed is not None:
        status = SubscriptionStatus.UNSUBSCRIBED if left else SubscriptionStatus.ACTIVE
    db.add(
        Subscription(
            subscriber_id=who.id,
            newsletter_id=newsletter.id,
            status=status,
            confirmed_at=confirmed,
            unsubscribed_at=left,
            created_at=confirmed or NOW,
        )
    )


@pytest.fixture
def world(db: Session) -> World:
    daily = Newsletter(slug="daily", name="Daily digest", position=0)
    offers = Newsletter(slug="offers", name="Offers", kind=NewsletterKind.CAMPAIGN, position=1)
    db.add_all([daily, offers])
    db.flush()
    readers = [reader(db, n) for n in range(6)]
    subscribe(db, readers[0], daily, days_ago(2))
    subscribe(db, readers[1], daily, days_ago(10))
    subscribe(db, readers[2], daily, days_ago(40))  # before the window
    subscribe(db, readers[3], daily, None)  # pending
    subscribe(db, readers[4], daily, days_ago(20), left=days_ago(5))
    subscribe(db, readers[5], offers, days_ago(1))
    db.commit()
    return World(daily, offers, readers)


def test_each_list_counts_confirmed_pending_and_its_month(db: Session, world: World) -> None:
    daily, offers = list_counts(db, NOW)
    assert (daily.slug, daily.confirmed, daily.pending) == ("daily", 3, 1)
    assert (daily.confirmations, daily.unsubscribes, daily.net) == (3, 1, 2)
    assert (offers.slug, offers.confirmed, offers.pending, offers.net) == ("offers", 1, 0, 1)


def test_thirty_utc_days_of_confirmations_unsubscribes_and_active_subscriptions(
    db: Session, world: World
) -> None:
    days = daily_counts(db, NOW)
    assert [d.day for d in days] == [s.date() for s in day_starts(NOW.date())]
    assert len(days) == 30 and days[-1].day == NOW.date()
    by_age = {(NOW.date() - d.day).days: d for d in days}
    assert by_age[20].confirmations == 1 and by_age[5].unsubscribes == 1
    assert sum(d.confirmations for d in days) == 4 and sum(d.unsubscribes for d in days) == 1
    # Active at the end of each day: the one from 40 days ago, then each as it came and went.
    assert by_age[29].active == 1
    assert by_age[20].active == 2
    assert by_age[10].active == 3
    assert by_age[5].active == 2  # left that day
    assert by_age[0].active == 4


def test_the_last_sends_count_their_deliveries(db: Session, world: World) -> None:
    issue = Issue(
        newsletter_id=world.daily.id,
        kind=NewsletterKind.DIGEST,
        status=IssueStatus.SENDING,
        subject="Morning",
        started_at=days_ago(0),
        total=5,
    )
    older = Issue(
        newsletter_id=world.offers.id,
        kind=NewsletterKind.CAMPAIGN,
        status=IssueStatus.SENT,
        subject="Half price",
        started_at=days_ago(3),
    )
    draft = Issue(newsletter_id=world.daily.id, kind=NewsletterKind.DIGEST, subject="Draft")
    db.add_all([issue, older, draft])
    db.flush()
    statuses = [
        DeliveryStatus.SENT,
        DeliveryStatus.SENT,
        DeliveryStatus.FAILED,
        DeliveryStatus.BOUNCED,
        DeliveryStatus.QUEUED,
    ]
    for who, status in zip(world.readers, statuses, strict=False):
        db.add(Delivery(issue_id=issue.id, subscriber_id=who.id, status=status))
    db.commit()
    first, second = last_sends(db)
    assert (first.subject, first.newsletter, first.status) == ("Morning", "Daily digest", "sending")
    assert (first.delivered, first.failed, first.bounced, first.queued) == (2, 1, 1, 1)
    assert (second.subject, second.delivered, second.total) == ("Half price", 0, 0)


def test_next_up_are_schedules_next_firings_and_issues_due_at_a_time(
    db: Session, world: World
) -> None:
    db.add(Schedule(newsletter_id=world.daily.id, name="Morning", cron="0 8 * * *"))
    db.add(Schedule(newsletter_id=world.daily.id, cron="0 9 * * *", enabled=False))
    db.add(
        Issue(
            newsletter_id=world.offers.id,
            kind=NewsletterKind.CAMPAIGN,
            status=IssueStatus.SCHEDULED,
            subject="Spring sale",
            send_at=NOW + timedelta(hours=6),
        )
    )
    db.commit()
    rows = upcoming(db, NOW)
    assert [(r.at, r.newsletter) for r in rows] == [
        (NOW + timedelta(hours=6), "Offers"),
        (datetime(2026, 4, 1, 8, 0, tzinfo=UTC), "Daily digest"),
    ]
    assert "Spring sale" in rows[0].what and rows[1].what == "Morning"


def test_feed_health_says_which_feeds_fail(db: Session) -> None:
    db.add_all(
        [
            Feed(url="https://news.example.com/feed", title="News", last_fetched_at=NOW),
            Feed(url="https://b.example.com/rss", error_count=2, last_error="timed out"),
            Feed(url="https://c.example.com/rss"),
            Feed(url="https://d.example.com/rss", enabled=False),
        ]
    )
    db.commit()
    assert [f.health for f in feed_health(db)] == ["ok", "failing", "never fetched", "disabled"]


def test_a_reader_who_left_and_came_back_counts_again_from_their_return(db: Session) -> None:
    daily = Newsletter(slug="daily", name="Daily digest")
    db.add(daily)
    db.flush()
    back, gone_before, gone_during = (reader(db, n) for n in range(3))
    # Left 15 days ago, confirmed again 8 days ago: the row keeps both times.
    db.add(
        Subscription(
            subscriber_id=back.id,
            newsletter_id=daily.id,
            status=SubscriptionStatus.ACTIVE,
            confirmed_at=days_ago(8),
            unsubscribed_at=days_ago(15),
        )
    )
    subscribe(db, gone_before, daily, days_ago(50), left=days_ago(40))  # gone before the window
    subscribe(db, gone_during, daily, days_ago(45), left=days_ago(3))  # active at its start
    db.commit()
    by_age = {(NOW.date() - d.day).days: d for d in daily_counts(db, NOW)}
    assert by_age[29].active == 1  # only the one that left 3 days ago
    assert by_age[15].unsubscribes == 1 and by_age[15].active == 1
    assert by_age[8].confirmations == 1 and by_age[8].active == 2
    assert by_age[3].unsubscribes == 1 and by_age[3].active == 1
    assert by_age[0].active == 1
