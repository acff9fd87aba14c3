"""The consent ledger: a reader's export holds their subscriptions and consent records."""

from __future__ import annotations

import json

from sqlalchemy.orm import Session

from newsletter.readers import consent
from newsletter.readers.signup import (
    subscribe,
)
from newsletter.settings import Settings
from tests.support.readers import Lists, confirm_signup, signup_for


def test_export_subscriber_includes_subscriptions_and_consent(
    db: Session, settings: Settings, lists: Lists
) -> None:
    result = subscribe(db, settings, signup_for("export@example.com", lists.daily.id, name="Eve"))
    db.commit()
    assert result.consent_id is not None
    confirm_signup(db, settings, result.consent_id)
    data = consent.export_subscriber(db, "EXPORT@example.com")
    assert data is not None
    assert data["subscriber"]["email"] == "export@example.com"
    assert data["subscriber"]["status"] == "active"
    assert data["subscriptions"][0]["newsletter"]["slug"] == "daily"
    assert data["subscriptions"][0]["status"] == "active"
    record = data["consent_records"][0]
    assert record["consent_text"] == "I agree." and record["signup_ip"] == "203.0.113.9"
    assert record["confirmed_at"] and "nonce" not in record
    assert data["suppressed"] is None
    assert consent.export_subscriber(db, "nobody@example.com") is None

    json.dumps(data)  # JSON-ready as it is
