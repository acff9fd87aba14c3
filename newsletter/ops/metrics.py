"""Prometheus metrics read from the database at scrape time.

Web, workers and beat are separate processes (and machines), so in-process counters would each
see a slice. The database already holds the truth — every delivery, issue and subscriber — so a
custom collector turns a few GROUP BY queries into gauges, and every scrape of any web process
gives the same, complete answer.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsletter.store.models import (
    Delivery,
    Feed,
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
