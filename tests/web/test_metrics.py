"""/metrics: Prometheus gauges read from the database, behind a bearer token."""

from __future__ import annotations

from datetime import timedelta

from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.orm import Session

from newsletter.access.api_tokens import SCOPES, create_token
from newsletter.store.db import utcnow
from newsletter.store.models import (
    Delivery,
    DeliveryStatus,
    Feed,
    Issue,
    IssueStatus,
    NewsletterKind,
    SubscriberStatus,
    SubscriptionStatus,
    Suppression,
    UnmatchedReport,
)
from tests.support.readers import add_subscriber, make_lists


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_metrics_need_a_token(client: FlaskClient, db: Session) -> None:
    assert client.get("/metrics").status_code == 401
    response = client.get("/metrics", headers={"Authorization": "Bearer nlt_forged"})
    assert response.status_code == 401
    assert "newsletter tokens create" in response.text


def test_metrics_need_the_metrics_read_scope(client: FlaskClient, db: Session) -> None:
    _, token = create_token(db, "cms", [s for s in SCOPES if s != "metrics:read"])
    db.commit()
    response = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 403
    assert "lacks the scope 'metrics:read'" in response.text
    assert "--scope metrics:read" in response.text
    assert 'scope="metrics:read"' in response.headers["WWW-Authenticate"]
    assert "newsletter_subscribers" not in response.text


def test_metrics_report_what_the_database_holds(client: FlaskClient, db: Session) -> None:
    lists = make_lists(db)
    ada = add_subscriber(db, "ada@example.org", SubscriberStatus.ACTIVE, [lists.daily])
    bob = add_subscriber(db, "bob@example.org", SubscriberStatus.ACTIVE, [lists.daily])
    add_subscriber(
        db, "cy@example.org", SubscriberStatus.PENDING, [lists.daily], SubscriptionStatus.PENDING
    )
    sending = Issue(
        newsletter_id=lists.daily.id, kind=NewsletterKind.DIGEST, status=IssueStatus.SENDING
    )
    done = Issue(newsletter_id=lists.daily.id, kind=NewsletterKind.DIGEST, status=IssueStatus.SENT)
    db.add_all([sending, done])
    db.flush()
    db.add_all(
        [
            Delivery(issue_id=sending.id, subscriber_id=ada.id, status=DeliveryStatus.SENT),
            Delivery(issue_id=sending.id, subscriber_id=bob.id, status=DeliveryStatus.QUEUED),
            # A finished issue's deliveries are not in-flight and must not be counted.
            Delivery(issue_id=done.id, subscriber_id=ada.id, status=DeliveryStatus.SENT),
        ]
    )
    fetched = utcnow() - timedelta(minutes=5)
    db.add(Feed(url="https://news.example.com/feed/", error_count=2, last_fetched_at=fetched))
    db.add(Suppression(email_hash="0" * 64, reason="bounce"))
    db.add(UnmatchedReport(digest="1" * 64, kind="complaint", reason="no evidence"))
    _, token = create_token(db, "prometheus", ["metrics:read"])
    db.commit()

    response = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    samples = _samples(response.text)

    assert samples[("newsletter_subscribers", (("status", "active"),))] == 2
    assert samples[("newsletter_subscribers", (("status", "pending"),))] == 1
    daily_active = (("frequency", "daily"), ("newsletter", "daily"), ("status", "active"))
    assert samples[("newsletter_subscriptions", daily_active)] == 2
    assert samples[("newsletter_issues", (("newsletter", "daily"), ("status", "sending")))] == 1
    assert samples[("newsletter_issues", (("newsletter", "daily"), ("status", "sent")))] == 1
    inflight = "newsletter_inflight_deliveries"
    key = (("issue", str(sending.id)), ("newsletter", "daily"))
    assert samples[(inflight, (*key, ("status", "sent")))] == 1
    assert samples[(inflight, (*key, ("status", "queued")))] == 1
    assert not any(
        name == inflight and ("issue", str(done.id)) in labels for name, labels in samples
    )
    feed = (("feed", "https://news.example.com/feed/"),)
    assert samples[("newsletter_feed_consecutive_errors", feed)] == 2
    assert samples[("newsletter_feed_last_fetch_timestamp_seconds", feed)] == fetched.timestamp()
    assert samples[("newsletter_suppressions", (("reason", "bounce"),))] == 1
    assert samples[("newsletter_inbound_unmatched_reports", (("kind", "complaint"),))] == 1
