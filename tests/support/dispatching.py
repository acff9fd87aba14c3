"""Helpers for dispatch tests: newsletters, posts and readers in bulk, and an inline task queue.

``InlineQueue`` runs the engine's tasks in this process, one after another, for unit tests of the
domain functions; the integration tests use the real Celery worker instead.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.delivery import batches, fan_out
from newsletter.readers.addresses import email_key, normalise
from newsletter.readers.newsletters import create_newsletter
from newsletter.settings import Settings
from newsletter.store.db import utcnow
from newsletter.store.models import (
    Frequency,
    Newsletter,
    NewsletterKind,
    Post,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
)


def newsletter(
    db: Session,
    slug: str,
    *,
    kind: NewsletterKind = NewsletterKind.DIGEST,
    frequency: Frequency = Frequency.DAILY,
    categories: Iterable[str] = (),
) -> Newsletter:
    """A newsletter, created as the CLI creates one (committed)."""
    row = create_newsletter(
        db,
        slug,
        slug.replace("-", " ").title(),
        kind=kind,
        frequency=frequency,
        categories=list(categories),
    )
    db.commit()
    return row


def posts(
    db: Session,
    count: int,
    *,
    categories: Iterable[Iterable[str]] = (("World",),),
    now: datetime | None = None,
    prefix: str = "Story",
) -> list[Post]:
    """``count`` posts published in the last hours, newest last; categories cycle."""
    now = now or utcnow()
    cats = [list(c) for c in categories] or [[]]
    rows = []
    for i in range(count):
        rows.append(
            Post(
                guid=f"{prefix.lower()}-{i}-{now.timestamp()}",
                link=f"https://news.example.com/{prefix.lower()}-{i}",
                title=f"{prefix} {i}",
                summary=f"Summary of {prefix.lower()} {i}.",
                content_html=f"<p>{prefix} {i} body.</p>",
                categories=cats[i % len(cats)],
                published_at=now - timedelta(minutes=5 * (count - i)),
                created_at=now - timedelta(minutes=5 * (count - i)),
            )
        )
    db.add_all(rows)
    db.commit()
    return rows


def reader(
    db: Session,
    address: str,
    lists: Iterable[Newsletter | tuple[Newsletter, Frequency]],
    *,
    status: SubscriberStatus = SubscriberStatus.ACTIVE,
    sub_status: SubscriptionStatus = SubscriptionStatus.ACTIVE,
    timezone: str = "UTC",
    topics: Iterable[str] = (),
    name: str = "",
    paused_until: datetime | None = None,
    commit: bool = True,
) -> Subscriber:
    """A reader on the given lists (with a frequency per list when given as a pair)."""
    normalised = normalise(address)
    now = utcnow()
    row = Subscriber(
        email=normalised,
        email_key=email_key(normalised),
        name=name,
        status=status,
        timezone=timezone,
        topics=list(topics),
        confirmed_at=now,
    )
    db.add(row)
    db.flush()
    for item in lists:
        target, frequency = item if isinstance(item, tuple) else (item, item.default_frequency)
        db.add(
            Subscription(
                subscriber_id=row.id,
                newsletter_id=target.id,
                status=sub_status,
                frequency=frequency,
                paused_until=paused_until,
                confirmed_at=now,
            )
        )
    if commit:
        db.commit()
    return row


def subscriber_id(db: Session, address: str) -> int:
    """The id of the reader with this address."""
    value = db.scalar(select(Subscriber.id).where(Subscriber.email_key == address.casefold()))
    assert value is not None
    return value


@dataclass
class InlineQueue:
    """The engine's TaskQueue, run in this process; ``drain()`` runs until nothing is left.

    Retries are run at once (the countdown is the broker's business); ``max_rounds`` stops a
    test that would otherwise loop on a server that never recovers.
    """

    settings: Settings
    tasks: deque[tuple[str, int, list[int], int]] = field(default_factory=deque)
    results: list[batches.BatchResult] = field(default_factory=list)
    fan_outs: int = 0
    batches: int = 0
    eager: bool = False  # run tasks as soon as they are enqueued (like a worker that waits)
    _running: bool = False

    def fan_out(self, issue_id: int) -> None:
        """Record a fan-out task."""
        self.tasks.append(("fan_out", issue_id, [], 0))
        self._maybe_run()

    def send_batch(self, issue_id: int, delivery_ids: list[int]) -> None:
        """Record a batch task."""
        self.tasks.append(("send_batch", issue_id, list(delivery_ids), 0))
        self._maybe_run()

    def _maybe_run(self) -> None:
        if self.eager and not self._running:
            self._running = True
            try:
                self.drain()
            finally:
                self._running = False

    def drain(self, max_rounds: int = 1000, retry: bool = True) -> None:
        """Run queued tasks (and retries) until the queue is empty."""
        rounds = 0
        while self.tasks and rounds < max_rounds:
            rounds += 1
            kind, issue_id, ids, retries = self.tasks.popleft()
            if kind == "fan_out":
                self.fan_outs += 1
                fan_out.advance(self.settings, issue_id, self)
                continue
            self.batches += 1
            result = batches.send_batch(self.settings, issue_id, ids, queue=self, retries=retries)
            self.results.append(result)
            if result.retry_ids and retry:
                self.tasks.append(("send_batch", issue_id, result.retry_ids, retries + 1))
