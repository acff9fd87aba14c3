"""POST /api/v1/inbound: a bounce, complaint or unsubscribe mail delivered by a mail service."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from newsletter.access.api_tokens import create_token
from newsletter.mail.transport import close_transports
from newsletter.readers.suppression import is_suppressed
from newsletter.settings import Settings
from newsletter.store.models import DeliveryStatus, SubscriberStatus
from tests.support.hostile_mail import huge_header, naming, nested, wide
from tests.support.inbound import (
    ALICE,
    BOB,
    BOUNCES,
    DATA,
    World,
    sample,
    snapshot,
    unmatched_reports,
)
from tests.support.smtp import SMTPSink


@pytest.fixture
def settings(settings: Settings, smtp_sink: SMTPSink) -> Settings:
    """conftest's settings with VERP, a 1 MB inbound limit and real sends to the sink."""
    return replace(
        settings,
        bounce_address=BOUNCES,
        inbound_max_bytes=1_000_000,
        smtp_url=smtp_sink.url,
        smtp_timeout=5.0,
        autopause_min_attempts=10_000,
    )


@pytest.fixture
def world(app: Flask, db: Session, settings: Settings, smtp_sink: SMTPSink) -> Iterator[World]:
    """Readers, and campaigns really sent to them through our dispatch."""
    with app.app_context():
        yield World.build(db, settings, smtp_sink)
    close_transports()


@pytest.fixture
def token(db: Session) -> str:
    """A bearer token of the mail service."""
    _row, plaintext = create_token(db, "mail service", ["inbound:write"])
    db.commit()
    return plaintext


def test_webhook_processes_a_genuine_bounce_of_a_real_delivery(
    client: FlaskClient, token: str, world: World
) -> None:
    issue_id = world.send()
    bob_id = world.reader(BOB).id
    report = sample(
        "postfix-5.1.1.eml",
        verp=world.mail_to(BOB, issue_id).mail_from,
        email=BOB,
        original_headers="X: y",
    )
    auth = {"Authorization": f"Bearer {token}", "Content-Type": "message/rfc822"}

    assert client.post("/api/v1/inbound", data=report).status_code == 401
    wrong = client.post(
        "/api/v1/inbound",
        data=report,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "text/plain"},
    )
    assert wrong.status_code == 415 and "message/rfc822" in wrong.get_json()["detail"]
    junk = client.post("/api/v1/inbound", data=(DATA / "junk.bin").read_bytes(), headers=auth)
    assert junk.status_code == 400 and "not a mail message" in junk.get_json()["detail"]
    huge = client.post("/api/v1/inbound", data=report + b"x" * 1_000_000, headers=auth)
    assert huge.status_code == 413

    ok = client.post("/api/v1/inbound", data=report, headers=auth)
    assert ok.status_code == 200
    body = ok.get_json()
    assert body["result"] == "bounce" and body["changed"] is True
    assert (body["subscriber_id"], body["issue_id"]) == (bob_id, issue_id)
    again = client.post("/api/v1/inbound", data=report, headers=auth).get_json()
    assert again["changed"] is False
    assert is_suppressed(world.db, BOB) and not is_suppressed(world.db, ALICE)
    assert world.delivery(BOB, issue_id).status == DeliveryStatus.BOUNCED
    assert world.reader(BOB).status == SubscriberStatus.BOUNCED


def test_webhook_answers_unmatched_for_forged_reports_and_changes_no_reader(
    client: FlaskClient, token: str, world: World
) -> None:
    issue_id = world.send()
    bob_id = world.reader(BOB).id
    auth = {"Authorization": f"Bearer {token}", "Content-Type": "message/rfc822"}
    made_up = f"Message-ID: <made-up@news.example.com>\nTo: {BOB}"
    forged = {
        "bare": sample(
            "postfix-5.1.1.eml", verp="bounces@news.example.com", email=BOB, original_headers="X: y"
        ),
        "no tag": sample(
            "postfix-5.1.1.eml",
            verp=f"bounces+{issue_id}-{bob_id}@news.example.com",
            email=BOB,
            original_headers=made_up,
        ),
        "complaint": sample(
            "arf-complaint.eml",
            feedback_type="abuse",
            verp=f"bounces+{issue_id}-{bob_id}-aaaaaaaaaaaa@news.example.com",
            email=BOB,
            original_message=f"{made_up}\nSubject: Offer\n\nHi",
        ),
    }
    state = snapshot(world.db)
    for why, report in forged.items():
        answer = client.post(
            "/api/v1/inbound?recipient=bounces@news.example.com", data=report, headers=auth
        )
        assert answer.status_code == 200, why
        body = answer.get_json()
        assert body["result"] == "unmatched" and body["changed"] is False, (why, body)
        assert "proves no mail of ours" in body["summary"] and body["subscriber_id"] is None
    assert snapshot(world.db) == state
    assert unmatched_reports(world.db) == len(forged)
    assert not is_suppressed(world.db, BOB)


def test_webhook_refuses_hostile_messages_with_a_4xx_and_stores_nothing(
    client: FlaskClient, token: str, world: World
) -> None:
    issue_id = world.send()
    # A genuine bounce of a real delivery: within the limits it would bounce Bob.
    report = sample(
        "postfix-5.1.1.eml",
        verp=world.mail_to(BOB, issue_id).mail_from,
        email=BOB,
        original_headers="X: y",
    )
    auth = {"Authorization": f"Bearer {token}", "Content-Type": "message/rfc822"}
    hostile = {
        "depth": (nested(report, 1000), "MIME parts nested deeper than 20 levels"),
        "parts": (wide(report, 10_000), "more than 200 MIME parts"),
        "recipients": (naming(report, 5_000), "report names more than 100 recipients"),
        "headers": (huge_header(report, 300_000), "a header section larger than 262144 bytes"),
    }
    state, unmatched = snapshot(world.db), unmatched_reports(world.db)
    for limit, (raw, words) in hostile.items():
        assert len(raw) < 1_000_000  # within the body limit: refused for its structure
        answer = client.post("/api/v1/inbound", data=raw, headers=auth)
        assert answer.status_code == 422, (limit, answer.get_data(as_text=True)[:300])
        assert answer.get_json() == {
            "type": "about:blank",
            "title": "Unprocessable Entity",
            "status": 422,
            "detail": f"message refused: {words}",
            "limit": limit,
        }
    huge = client.post("/api/v1/inbound", data=report + b"x" * 1_000_000, headers=auth)
    assert huge.status_code == 413 and huge.get_json()["status"] == 413
    assert snapshot(world.db) == state and unmatched_reports(world.db) == unmatched

    ok = client.post("/api/v1/inbound", data=nested(report, 5), headers=auth)
    assert ok.status_code == 200 and ok.get_json()["result"] == "bounce"
    assert world.reader(BOB).status == SubscriberStatus.BOUNCED
