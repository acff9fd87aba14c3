"""POST /api/v1/inbound: a bounce, complaint or unsubscribe mail delivered by a mail service."""

from __future__ import annotations

from dataclasses import replace

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.access.api_tokens import create_token
from newsletter.issues.rendering import envelope_sender
from newsletter.readers.subscriptions import is_suppressed
from newsletter.settings import Settings
from newsletter.store.models import Delivery, DeliveryStatus
from tests.support.inbound import BOB, BOUNCES, DATA, sample, seed_mailed


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """conftest's settings with VERP and a small inbound limit."""
    return replace(settings, bounce_address=BOUNCES, inbound_max_bytes=200_000)


@pytest.fixture
def token(db: Session) -> str:
    """A bearer token of the mail service."""
    _row, plaintext = create_token(db, "mail service", ["inbound:write"])
    db.commit()
    return plaintext


def test_webhook_processes_a_raw_message(
    client: FlaskClient, token: str, settings: Settings, db: Session
) -> None:
    s = settings
    issue_id, bob_id, _ = seed_mailed(s)
    report = sample(
        "postfix-5.1.1.eml",
        verp=envelope_sender(s, issue_id, bob_id),
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
    assert wrong.status_code == 415 and "message/rfc822" in wrong.get_json()["error"]["message"]
    junk = client.post("/api/v1/inbound", data=(DATA / "junk.bin").read_bytes(), headers=auth)
    assert junk.status_code == 400 and "not a mail message" in junk.get_json()["error"]["message"]
    huge = client.post("/api/v1/inbound", data=report + b"x" * 300_000, headers=auth)
    assert huge.status_code == 413

    ok = client.post("/api/v1/inbound", data=report, headers=auth)
    assert ok.status_code == 200
    body = ok.get_json()
    assert body["result"] == "bounce" and body["changed"] is True
    assert (body["subscriber_id"], body["issue_id"]) == (bob_id, issue_id)
    again = client.post("/api/v1/inbound", data=report, headers=auth).get_json()
    assert again["changed"] is False
    db.expire_all()
    assert is_suppressed(db, BOB)
    delivery = db.scalar(select(Delivery).where(Delivery.subscriber_id == bob_id))
    assert delivery is not None and delivery.status == DeliveryStatus.BOUNCED
