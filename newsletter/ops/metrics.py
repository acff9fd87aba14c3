"""Prometheus metrics read from the database at scrape time.

Web, workers and beat are separate processes (and machines), so in-process counters would each
see a slice. The database already holds the truth — every delivery, issue and subscriber — so a
custom collector turns a few GROUP BY queries into gauges, and every scrape of any web process
gives the same, complete answer. The depth of each Celery queue is read from the broker the same
way, at scrape time (:class:`QueueDepthCollector`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from newsletter.ops import broker
from newsletter.store.db import utcnow
from newsletter.store.models import (
    ConsentRecord,
    Delivery,
    DeliveryStatus,
    Feed,
    FeedbackEvent,
    Issue,
    IssueStatus,
    Newsletter,
    Subscriber,
    Subscription,
    Suppression,
    UnmatchedReport,
)

# Deliveries are counted for issues still in flight only: a full count over every issue ever
# sent grows without bound, while an in-flight send is what an alert needs to watch.
IN_FLIGHT = (IssueStatus.SENDING, IssueStatus.PAUSED, IssueStatus.SCHEDULED)
SEND_RATE_WINDOW = timedelta(minutes=1)
SIGNUP_WINDOW = timedelta(hours=1)
log = logging.getLogger(__name__)


class DatabaseCollector(Collector):
    """Collects subscriber, subscription, issue, delivery and feed gauges from one session."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Yield every metric family (called by the registry at scrape time)."""
        yield self._subscribers()
        yield self._subscriptions()
        yield self._issues()
        yield self._deliveries()
        now = utcnow()
        yield self._send_rate(now)
        yield self._feedback()
        yield from self._signups(now)
        yield self._suppressions()
        yield self._unmatched()
        yield from self._feeds()

    def _subscribers(self) -> GaugeMetricFamily:
        family = GaugeMetricFamily(
            "newsletter_subscribers", "Readers by status.", labels=["status"]
        )
        rows = self.session.execute(
            select(Subscriber.status, func.count()).group_by(Subscriber.status)
        )
        for status, count in rows:
            family.add_metric([status.value], count)
        return family

    def _subscriptions(self) -> GaugeMetricFamily:
        family = GaugeMetricFamily(
            "newsletter_subscriptions",
            "Subscriptions by newsletter, status and frequency.",
            labels=["newsletter", "status", "frequency"],
        )
        rows = self.session.execute(
            select(Newsletter.slug, Subscription.status, Subscription.frequency, func.count())
            .join(Newsletter, Newsletter.id == Subscription.newsletter_id)
            .group_by(Newsletter.slug, Subscription.status, Subscription.frequency)
        )
        for slug, status, frequency, count in rows:
            family.add_metric([slug, status.value, frequency.value], count)
        return family

    def _issues(self) -> GaugeMetricFamily:
        family = GaugeMetricFamily(
            "newsletter_issues", "Issues by newsletter and status.", labels=["newsletter", "status"]
        )
        rows = self.session.execute(
            select(Newsletter.slug, Issue.status, func.count())
            .join(Newsletter, Newsletter.id == Issue.newsletter_id)
            .group_by(Newsletter.slug, Issue.status)
        )
        for slug, status, count in rows:
            family.add_metric([slug, status.value], count)
        return family

    def _deliveries(self) -> GaugeMetricFamily:
        family = GaugeMetricFamily(
            "newsletter_inflight_deliveries",
            "Deliveries of issues that are scheduled, sending or paused, by status.",
            labels=["issue", "newsletter", "status"],
        )
        rows = self.session.execute(
            select(Issue.id, Newsletter.slug, Delivery.status, func.count())
            .join(Issue, Issue.id == Delivery.issue_id)
            .join(Newsletter, Newsletter.id == Issue.newsletter_id)
            .where(Issue.status.in_(IN_FLIGHT))
            .group_by(Issue.id, Newsletter.slug, Delivery.status)
        )
        for issue_id, slug, status, count in rows:
            family.add_metric([str(issue_id), slug, status.value], count)
        return family

    def _send_rate(self, now: datetime) -> GaugeMetricFamily:
        # Only issues in flight or finished within the window can have a mail sent in it: the
        # (issue, status) index then finds their sent rows without reading every delivery ever.
        family = GaugeMetricFamily(
            "newsletter_mails_sent_last_minute",
            "Mails of issues handed to the SMTP relay in the last 60 seconds, by newsletter.",
            labels=["newsletter"],
        )
        since = now - SEND_RATE_WINDOW
        rows = self.session.execute(
            select(Newsletter.slug, func.count())
            .select_from(Delivery)
            .join(Issue, Issue.id == Delivery.issue_id)
            .join(Newsletter, Newsletter.id == Issue.newsletter_id)
            .where(
                or_(Issue.status.in_(IN_FLIGHT), Issue.finished_at >= since),
                Delivery.status == DeliveryStatus.SENT,
                Delivery.sent_at >= since,
            )
            .group_by(Newsletter.slug)
        )
        for slug, count in rows:
            family.add_metric([slug], count)
        return family

    def _feedback(self) -> GaugeMetricFamily:
        # A gauge, not a counter: erasing a reader deletes their events, so the count can fall.
        family = GaugeMetricFamily(
            "newsletter_feedback_events",
            "Bounces and complaints on record (hard-bounce, soft-bounce, complaint), by kind.",
            labels=["kind"],
        )
        rows = self.session.execute(
            select(FeedbackEvent.kind, func.count()).group_by(FeedbackEvent.kind)
        )
        for kind, count in rows:
            family.add_metric([kind.value], count)
        return family

    def _signups(self, now: datetime) -> Iterator[GaugeMetricFamily]:
        # Counts over the last hour rather than counters: unconfirmed signups are purged after
        # NEWSLETTER_CONFIRM_EXPIRY_DAYS and erasure deletes consent records, so a running total
        # read from the database would fall, and Prometheus would take the fall for a reset.
        since = now - SIGNUP_WINDOW
        asked = self.session.scalar(
            select(func.count()).select_from(ConsentRecord).where(ConsentRecord.signup_at >= since)
        )
        confirmed = self.session.scalar(
            select(func.count())
            .select_from(ConsentRecord)
            .where(ConsentRecord.confirmed_at >= since)
        )
        yield GaugeMetricFamily(
            "newsletter_signups_last_hour",
            "Signups (consent records) made in the last hour, confirmed or not.",
            value=asked or 0,
        )
        yield GaugeMetricFamily(
            "newsletter_signup_confirmations_last_hour",
            "Signups confirmed (double opt-in link followed) in the last hour.",
            value=confirmed or 0,
        )

    def _suppressions(self) -> GaugeMetricFamily:
        family = GaugeMetricFamily(
            "newsletter_suppressions", "Suppressed addresses by reason.", labels=["reason"]
        )
        rows = self.session.execute(
            select(Suppression.reason, func.count()).group_by(Suppression.reason)
        )
        for reason, count in rows:
            family.add_metric([reason], count)
        return family

    def _unmatched(self) -> GaugeMetricFamily:
        # Forged or unprovable bounces and complaints: a rise is worth a look, never acted on.
        family = GaugeMetricFamily(
            "newsletter_inbound_unmatched_reports",
            "Bounces and complaints that proved no mail of ours (changed no reader), by kind.",
            labels=["kind"],
        )
        rows = self.session.execute(
            select(UnmatchedReport.kind, func.count()).group_by(UnmatchedReport.kind)
        )
        for kind, count in rows:
            family.add_metric([kind], count)
        return family

    def _feeds(self) -> Iterator[GaugeMetricFamily]:
        errors = GaugeMetricFamily(
            "newsletter_feed_consecutive_errors",
            "Failed fetches in a row per feed (0 when the last fetch worked).",
            labels=["feed"],
        )
        fetched = GaugeMetricFamily(
            "newsletter_feed_last_fetch_timestamp_seconds",
            "When each feed was last fetched (Unix time).",
            labels=["feed"],
        )
        for url, error_count, last_fetched in self.session.execute(
            select(Feed.url, Feed.error_count, Feed.last_fetched_at).where(Feed.enabled)
        ):
            errors.add_metric([url], error_count)
            if last_fetched is not None:
                fetched.add_metric([url], last_fetched.timestamp())
        yield errors
        yield fetched


class QueueDepthCollector(Collector):
    """Tasks waiting per Celery queue, read from the broker at scrape time.

    A broker that does not answer within the timeout leaves the family out (and says so in the
    log and in ``newsletter_broker_up``) rather than failing the whole scrape.
    """

    def __init__(
        self, url: str, transport_options: Mapping[str, Any], queues: Sequence[str]
    ) -> None:
        self.url = url
        self.transport_options = transport_options
        self.queues = queues

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Yield ``newsletter_broker_up`` and, when it is up, ``newsletter_queue_messages``."""
        try:
            depths = broker.queue_depths(self.url, self.transport_options, self.queues)
        except broker.UNREACHABLE as exc:
            log.warning("metrics: broker unreachable, no queue depths: %s", type(exc).__name__)
            yield GaugeMetricFamily(
                "newsletter_broker_up", "1 when the Celery broker answered this scrape.", value=0
            )
            return
        yield GaugeMetricFamily(
            "newsletter_broker_up", "1 when the Celery broker answered this scrape.", value=1
        )
        family = GaugeMetricFamily(
            "newsletter_queue_messages",
            "Tasks waiting in each Celery queue (not yet taken by a worker).",
            labels=["queue"],
        )
        for queue, depth in depths.items():
            family.add_metric([queue], depth)
        yield family
