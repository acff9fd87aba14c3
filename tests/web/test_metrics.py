"""/metrics: Prometheus gauges read from the database, behind a bearer token."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.orm import Session

from newsletter import create_app
from newsletter.access.api_tokens import SCOPES, create_token
from newsletter.settings import Settings
from newsletter.store.db import dispose_engines, get_sessionmaker, utcnow
from newsletter.store.models import (
    ConsentRecord,
    Delivery,
    DeliveryStatus,
    Feed,
    FeedbackEvent,
    FeedbackKind,
    Issue,
    IssueStatus,
    NewsletterKind,
    SubscriberStatus,
    SubscriptionStatus,
    Suppression,
    UnmatchedReport,
)
from tests.support.readers import add_subscriber, make_lists
from tests.support.smtp import free_port


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


def test_metrics_report_the_send_rate_feedback_and_signups(
    client: FlaskClient, db: Session
) -> None:
    lists = make_lists(db)
    ada = add_subscriber(db, "ada@example.org", SubscriberStatus.ACTIVE, [lists.daily])
    bob = add_subscriber(db, "bob@example.org", SubscriberStatus.ACTIVE, [lists.daily])
    cy = add_subscriber(db, "cy@example.org", SubscriberStatus.ACTIVE, [lists.daily])
    now = utcnow()
    sending = Issue(
        newsletter_id=lists.daily.id, kind=NewsletterKind.DIGEST, status=IssueStatus.SENDING
    )
    db.add(sending)
    db.flush()
    db.add_all(
        [
            Delivery(
                issue_id=sending.id,
                subscriber_id=ada.id,
                status=DeliveryStatus.SENT,
                sent_at=now - timedelta(seconds=10),
            ),
            Delivery(
                issue_id=sending.id,
                subscriber_id=bob.id,
                status=DeliveryStatus.SENT,
                sent_at=now - timedelta(seconds=30),
            ),
            # Sent two minutes ago: outside the last minute.
            Delivery(
                issue_id=sending.id,
                subscriber_id=cy.id,
                status=DeliveryStatus.SENT,
                sent_at=now - timedelta(minutes=2),
            ),
            FeedbackEvent(subscriber_id=ada.id, issue_id=sending.id, kind=FeedbackKind.COMPLAINT),
            FeedbackEvent(subscriber_id=bob.id, issue_id=sending.id, kind=FeedbackKind.HARD_BOUNCE),
            FeedbackEvent(subscriber_id=cy.id, issue_id=sending.id, kind=FeedbackKind.HARD_BOUNCE),
            ConsentRecord(
                subscriber_id=ada.id, consent_text_version="v1", nonce="n1", signup_at=now
            ),
            ConsentRecord(
                subscriber_id=bob.id,
                consent_text_version="v1",
                nonce="n2",
                signup_at=now - timedelta(minutes=10),
                confirmed_at=now - timedelta(minutes=5),
            ),
            # Signed up and confirmed yesterday: in neither hourly count.
            ConsentRecord(
                subscriber_id=cy.id,
                consent_text_version="v1",
                nonce="n3",
                signup_at=now - timedelta(days=1),
                confirmed_at=now - timedelta(days=1),
            ),
        ]
    )
    _, token = create_token(db, "prometheus", ["metrics:read"])
    db.commit()

    samples = _samples(client.get("/metrics", headers=_bearer(token)).text)

    assert samples[("newsletter_mails_sent_last_minute", (("newsletter", "daily"),))] == 2
    assert samples[("newsletter_feedback_events", (("kind", "hard-bounce"),))] == 2
    assert samples[("newsletter_feedback_events", (("kind", "complaint"),))] == 1
    assert samples[("newsletter_signups_last_hour", ())] == 2
    assert samples[("newsletter_signup_confirmations_last_hour", ())] == 1


def test_metrics_report_queue_depths_from_the_broker(
    app: Flask, client: FlaskClient, db: Session
) -> None:
    celery = app.extensions["celery"]
    celery.send_task("newsletter.tick")  # routed to housekeeping
    celery.send_task("newsletter.purge_pending")  # housekeeping too
    celery.send_task("newsletter.send_confirmation", args=[1])  # transactional
    _, token = create_token(db, "prometheus", ["metrics:read"])
    db.commit()

    samples = _samples(client.get("/metrics", headers=_bearer(token)).text)

    assert samples[("newsletter_broker_up", ())] == 1
    assert samples[("newsletter_queue_messages", (("queue", "housekeeping"),))] == 2
    assert samples[("newsletter_queue_messages", (("queue", "transactional"),))] == 1
    assert samples[("newsletter_queue_messages", (("queue", "bulk"),))] == 0


def test_a_scrape_succeeds_without_queue_depths_when_the_broker_is_down(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(replace(settings, broker_url=f"redis://127.0.0.1:{free_port()}/0"))
    try:
        session = get_sessionmaker(settings.database_url)()
        _, token = create_token(session, "prometheus", ["metrics:read"])
        session.commit()
        session.close()
        caplog.set_level(logging.WARNING)
        response = app.test_client().get("/metrics", headers=_bearer(token))
    finally:
        dispose_engines()
    assert response.status_code == 200
    samples = _samples(response.text)
    assert samples[("newsletter_broker_up", ())] == 0
    assert not [name for name, _ in samples if name == "newsletter_queue_messages"]
    assert any("broker unreachable" in r.getMessage() for r in caplog.records)


def test_request_latency_is_labelled_by_route_pattern_never_the_token(
    client: FlaskClient, db: Session
) -> None:
    secret = "eyJzIjoxfQ.a-token-that-must-not-be-a-label"
    _, token = create_token(db, "prometheus", ["metrics:read"])
    db.commit()

    def confirm_counts() -> dict[str, float]:
        text = client.get("/metrics", headers=_bearer(token)).text
        assert secret not in text
        return {
            dict(labels)["status"]: value
            for (name, labels), value in _samples(text).items()
            if name == "newsletter_http_request_duration_seconds_count"
            and dict(labels).get("route") == "/confirm/<token>"
            and dict(labels).get("method") == "GET"
        }

    # The histogram lives as long as the process: other tests' requests may be in it already.
    before = confirm_counts()
    statuses = {client.get(f"/confirm/{secret}").status_code for _ in range(3)}
    after = confirm_counts()
    assert len(statuses) == 1
    status = f"{statuses.pop() // 100}xx"
    assert after[status] - before.get(status, 0) == 3
    scrapes = [
        value
        for (name, labels), value in _samples(
            client.get("/metrics", headers=_bearer(token)).text
        ).items()
        if name == "newsletter_http_request_duration_seconds_count"
        and dict(labels).get("route") == "/metrics"
    ]
    assert scrapes  # the scrapes themselves, by their own route


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
