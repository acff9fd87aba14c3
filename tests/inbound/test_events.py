"""Provider events go through the evidence rules and actions of inbound mail, idempotently."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from newsletter.inbound.events import EventKind, ProviderEvent, message_id
from newsletter.inbound.processing import Result, process_event
from newsletter.readers.suppression import is_suppressed
from newsletter.settings import Settings
from newsletter.store.models import Delivery, DeliveryStatus, Subscriber, SubscriberStatus
from tests.support.inbound import BOB, seed_mailed, snapshot, unmatched_reports


def event(kind: EventKind, msgid: str, recipient: str = BOB, **fields: str) -> ProviderEvent:
    """One provider event about Bob's mail."""
    return ProviderEvent("test", "evt-1", kind, recipient=recipient, message_id=msgid, **fields)


def run(db: Session, settings: Settings, e: ProviderEvent) -> Result:
    """Process and commit, as the routes do; then again, which must change nothing."""
    first = process_event(db, settings, e)
    db.commit()
    state, unmatched = snapshot(db), unmatched_reports(db)
    second = process_event(db, settings, e)
    db.commit()
    assert snapshot(db) == state and unmatched_reports(db) == unmatched
    assert not second.changed and second.result == first.result
    return first.result


def test_a_hard_bounce_event_with_our_message_id_bounces_and_suppresses(
    db: Session, settings: Settings
) -> None:
    issue_id, bob_id, msgid = seed_mailed(settings)
    hard = event(EventKind.HARD_BOUNCE, msgid, status="5.1.1", diagnostic="550 user unknown")

    assert run(db, settings, hard) == Result.BOUNCED
    bob = db.get(Subscriber, bob_id)
    assert bob is not None and bob.status == SubscriberStatus.BOUNCED
    delivery = db.query(Delivery).filter_by(issue_id=issue_id).one()
    assert delivery.status == DeliveryStatus.BOUNCED and delivery.smtp_code == 550
    assert is_suppressed(db, BOB)


def test_a_soft_bounce_event_counts_without_suppressing(db: Session, settings: Settings) -> None:
    _issue_id, _bob_id, msgid = seed_mailed(settings)
    assert run(db, settings, event(EventKind.SOFT_BOUNCE, msgid, status="4.2.2")) == (
        Result.SOFT_BOUNCE
    )
    assert not is_suppressed(db, BOB)


@pytest.mark.parametrize(
    ("msgid", "recipient"),
    [
        ("<someone-elses@news.example.com>", BOB),  # not our Message-ID
        ("", BOB),  # none at all: the address alone proves nothing
        ("<m1@news.example.com>", "carol@example.org"),  # ours, but not to this address
    ],
)
def test_an_event_without_evidence_is_unmatched_once(
    db: Session, settings: Settings, msgid: str, recipient: str
) -> None:
    seed_mailed(settings)
    before, state = unmatched_reports(db), snapshot(db)
    for kind in (EventKind.HARD_BOUNCE, EventKind.COMPLAINT):
        assert run(db, settings, event(kind, msgid, recipient)) == Result.UNMATCHED
    assert unmatched_reports(db) == before + 2  # one row per event, whatever the retries
    assert snapshot(db) == state


def test_delivery_and_other_events_change_nothing(db: Session, settings: Settings) -> None:
    _issue_id, _bob_id, msgid = seed_mailed(settings)
    state = snapshot(db)
    assert run(db, settings, event(EventKind.DELIVERY, msgid)) == Result.DELIVERED
    assert run(db, settings, event(EventKind.OTHER, msgid, note="open")) == Result.UNKNOWN
    assert snapshot(db) == state and unmatched_reports(db) == 0


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("<a.b@news.example.com>", "<a.b@news.example.com>"),
        ("a.b@news.example.com", "<a.b@news.example.com>"),  # Mailgun drops the brackets
        ("  <a.b@news.example.com> ", "<a.b@news.example.com>"),
        ("no-at-sign", ""),
        ("<a b@x>", ""),
        (12, ""),
        (None, ""),
    ],
)
def test_message_ids_are_read_as_we_store_them(given: object, stored: str) -> None:
    assert message_id(given) == stored
