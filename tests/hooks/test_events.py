"""Where events are emitted: the reader's path, inbound reports on evidence, an issue sent. Each
event is an outbox row per endpoint, written with the change (the endpoint fixture takes every
event type); the payloads are the contract the README documents."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.inbound.processing import Result, process_message
from newsletter.issues.status import finish_if_done
from newsletter.readers.erasure import erase
from newsletter.readers.manage import unsubscribe
from newsletter.readers.preferences import Preferences, update_preferences
from newsletter.readers.signup import subscribe
from newsletter.settings import Settings
from newsletter.store.db import utcnow
from newsletter.store.models import (
    Delivery,
    DeliveryStatus,
    Issue,
    IssueStatus,
    NewsletterKind,
    Subscriber,
    WebhookDelivery,
    WebhookEndpoint,
)
from tests.support import dispatching as seed
from tests.support.inbound import BOB, sample, seed_mailed
from tests.support.readers import Lists, confirm_signup, make_lists, signup_for


def emitted(db: Session) -> list[tuple[str, dict[str, Any]]]:
    """(type, data) of every event in the outbox, oldest first."""
    db.expire_all()
    rows = db.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id))
    return [(r.event_type, r.payload["data"]) for r in rows]


def test_signup_confirmation_and_unsubscribe_emit_their_events(
    db: Session, settings: Settings, endpoint: WebhookEndpoint
) -> None:
    lists: Lists = make_lists(db)
    result = subscribe(db, settings, signup_for("ada@example.com", lists.daily.id, lists.offers.id))
    db.commit()
    assert result.consent_id is not None and result.subscriber_id is not None
    created = {
        "subscriber_id": result.subscriber_id,
        "email": "ada@example.com",
        "status": "pending",
        "newsletters": ["daily", "offers"],
    }
    assert emitted(db) == [("subscriber.created", created)]

    confirm_signup(db, settings, result.consent_id)
    confirmed = {**created, "status": "active"}
    assert emitted(db)[1:] == [("subscriber.confirmed", confirmed)]
    confirm_signup(db, settings, result.consent_id)  # the link pressed again: no second event
    assert len(emitted(db)) == 2

    reader = db.get_one(Subscriber, result.subscriber_id)
    unsubscribe(db, reader, lists.offers.id)
    unsubscribe(db, reader, None)
    unsubscribe(db, reader, None)  # nothing left to leave: no event
    db.commit()
    assert emitted(db)[2:] == [
        ("subscriber.unsubscribed", {**created, "status": "active", "newsletters": ["offers"]}),
        (
            "subscriber.unsubscribed",
            {**created, "status": "unsubscribed", "newsletters": ["daily"]},
        ),
    ]


def test_a_known_reader_signing_up_again_is_not_created_again(
    db: Session, settings: Settings, endpoint: WebhookEndpoint
) -> None:
    lists = make_lists(db)
    subscribe(db, settings, signup_for("ada@example.com", lists.daily.id))
    db.commit()
    subscribe(db, settings, signup_for("ada@example.com", lists.offers.id))
    db.commit()
    assert [kind for kind, _ in emitted(db)] == ["subscriber.created"]


def test_unticking_a_list_on_the_preferences_page_emits_subscriber_unsubscribed(
    db: Session, settings: Settings, endpoint: WebhookEndpoint
) -> None:
    lists = make_lists(db)
    result = subscribe(db, settings, signup_for("ada@example.com", lists.daily.id, lists.offers.id))
    db.commit()
    assert result.consent_id is not None and result.subscriber_id is not None
    confirm_signup(db, settings, result.consent_id)
    reader = db.get_one(Subscriber, result.subscriber_id)
    keep_daily = Preferences("Ada", "UTC", frozenset({lists.daily.id}))
    update_preferences(db, settings, reader, keep_daily)
    update_preferences(db, settings, reader, keep_daily)  # saved again: nothing left
    db.commit()
    (last,) = emitted(db)[2:]
    assert last == (
        "subscriber.unsubscribed",
        {
            "subscriber_id": reader.id,
            "email": "ada@example.com",
            "status": "active",
            "newsletters": ["offers"],
        },
    )


def quoting(msgid: str) -> str:
    """A copy of our mail to Bob, as a report quotes it."""
    return f"Message-ID: {msgid}\nTo: {BOB}\nSubject: Offer\n\nHalf price this week.\n"


def test_a_proven_hard_bounce_emits_delivery_bounced_once(
    db: Session, settings: Settings, endpoint: WebhookEndpoint
) -> None:
    issue_id, bob_id, msgid = seed_mailed(settings)
    report = sample(
        "exim-5.1.1.eml",
        to="newsletter@news.example.com",
        email=BOB,
        original_message=quoting(msgid),
    )
    for _ in range(2):  # the same report twice: one event
        assert process_message(db, settings, report).result == Result.BOUNCED
        db.commit()
    assert emitted(db) == [
        (
            "delivery.bounced",
            {
                "issue_id": issue_id,
                "subscriber_id": bob_id,
                "email": BOB,
                "kind": "hard",
                "status": "5.1.1",
            },
        )
    ]


def test_a_bounce_that_proves_nothing_emits_nothing(
    db: Session, settings: Settings, endpoint: WebhookEndpoint
) -> None:
    seed_mailed(settings)
    report = sample(
        "exim-5.1.1.eml", to="newsletter@news.example.com", email=BOB, original_message=""
    )
    assert process_message(db, settings, report).result == Result.UNMATCHED
    db.commit()
    assert emitted(db) == []


def test_a_complaint_emits_complaint_received_and_the_unsubscribe(
    db: Session, settings: Settings, endpoint: WebhookEndpoint
) -> None:
    issue_id, bob_id, msgid = seed_mailed(settings)
    report = sample(
        "arf-complaint.eml",
        feedback_type="abuse",
        verp="newsletter@news.example.com",
        email=BOB,
        original_message=quoting(msgid),
    )
    assert process_message(db, settings, report).result == Result.COMPLAINT
    db.commit()
    kinds = {kind: data for kind, data in emitted(db)}
    assert kinds["complaint.received"] == {
        "issue_id": issue_id,
        "subscriber_id": bob_id,
        "email": BOB,
    }
    assert kinds["subscriber.unsubscribed"]["status"] == "unsubscribed"


def test_an_issue_that_finished_sending_emits_issue_sent_with_its_counts(
    db: Session, endpoint: WebhookEndpoint
) -> None:
    offers = seed.newsletter(db, "offers", kind=NewsletterKind.CAMPAIGN)
    readers = [seed.reader(db, f"r{i}@example.com", [offers]) for i in range(3)]
    now = utcnow()
    issue = Issue(
        newsletter_id=offers.id,
        kind=NewsletterKind.CAMPAIGN,
        subject="Half price",
        status=IssueStatus.SENDING,
        fanout_finished_at=now - timedelta(minutes=1),
    )
    db.add(issue)
    db.flush()
    for reader, status in zip(
        readers, [DeliveryStatus.SENT, DeliveryStatus.SENT, DeliveryStatus.FAILED], strict=True
    ):
        db.add(Delivery(issue_id=issue.id, subscriber_id=reader.id, status=status))
    db.commit()

    assert finish_if_done(db, issue.id, now)
    assert finish_if_done(db, issue.id, now) is False  # already sent: no second event
    assert emitted(db) == [
        (
            "issue.sent",
            {
                "issue_id": issue.id,
                "newsletter": "offers",
                "kind": "campaign",
                "subject": "Half price",
                "counts": {"failed": 1, "sent": 2},
            },
        )
    ]


def test_erasing_a_reader_drops_their_events_and_tells_the_site_without_the_address(
    db: Session, settings: Settings, endpoint: WebhookEndpoint
) -> None:
    lists: Lists = make_lists(db)
    ada = subscribe(db, settings, signup_for("ada@example.com", lists.daily.id))
    bob = subscribe(db, settings, signup_for("bob@example.com", lists.daily.id))
    db.commit()
    assert ada.subscriber_id is not None and bob.subscriber_id is not None
    assert [t for t, _ in emitted(db)] == ["subscriber.created", "subscriber.created"]

    erase(db, db.get_one(Subscriber, ada.subscriber_id))
    db.commit()

    # Ada's event, which held her address, is gone; Bob's stays; the site is told by id only.
    events = emitted(db)
    assert [(t, d.get("email")) for t, d in events] == [
        ("subscriber.created", "bob@example.com"),
        ("subscriber.erased", None),
    ]
    assert events[1][1] == {"subscriber_id": ada.subscriber_id}
    rows = db.scalars(select(WebhookDelivery)).all()
    assert all("ada@example.com" not in str(row.payload) for row in rows)
