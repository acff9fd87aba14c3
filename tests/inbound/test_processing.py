"""Inbound mail: bounces, spam complaints and mailto unsubscribes close the loop of what we send.

The reports quote mail our own dispatch really sent (a campaign through the real send path to an
aiosmtpd sink, with VERP on), filled into the samples of tests/data/inbound. Database outcomes
are asserted on SQLite and PostgreSQL, and every report is processed twice: the second time
must change nothing at all.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.inbound.processing import Outcome, Result, process_message, verp_ids
from newsletter.issues import lifecycle
from newsletter.issues.rendering import envelope_sender
from newsletter.mail.transport import close_transports
from newsletter.readers import links
from newsletter.readers.subscriptions import is_suppressed
from newsletter.settings import Settings
from newsletter.store.db import utcnow
from newsletter.store.models import (
    Delivery,
    DeliveryStatus,
    FeedbackEvent,
    FeedbackKind,
    Newsletter,
    NewsletterKind,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
    Suppression,
)
from tests.support import dispatching as seed
from tests.support.inbound import ALICE, BOB, BOUNCES, DATA, sample
from tests.support.services import migrated_postgres_database
from tests.support.smtp import Received, SMTPSink

# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(
    request: pytest.FixtureRequest, settings: Settings, smtp_sink: SMTPSink
) -> Iterator[Settings]:
    """conftest's settings on SQLite or PostgreSQL, sending to the sink with a VERP address."""
    real_sends = replace(
        settings,
        smtp_url=smtp_sink.url,
        smtp_timeout=5.0,
        bounce_address=BOUNCES,
        autopause_min_attempts=10_000,
    )
    if request.param == "sqlite":
        yield real_sends
        return
    with migrated_postgres_database() as url:
        yield replace(real_sends, database_url=url)


@pytest.fixture
def app(app: Flask) -> Iterator[Flask]:
    """conftest's app with an app context pushed (its Jinja environment renders the mails)."""
    with app.app_context():
        yield app
    close_transports()


@dataclass
class World:
    """Two lists, three readers, and a way to send a campaign for real."""

    db: Session
    settings: Settings
    sink: SMTPSink
    offers: Newsletter
    weekly: Newsletter

    def send(self, newsletter: Newsletter | None = None, subject: str = "Offer") -> int:
        """Send a campaign through the real dispatch path; returns the issue id."""
        before = len(self.sink.messages)
        issue = lifecycle.create_campaign(
            self.db,
            self.settings,
            newsletter or self.offers,
            subject=subject,
            body_html="<p>Half price this week.</p>",
        )
        self.db.commit()
        queue = seed.InlineQueue(self.settings)
        lifecycle.send(self.db, self.settings, issue.id, queue)
        queue.drain()
        assert len(self.sink.messages) > before
        return issue.id

    def mail_to(self, address: str, issue_id: int) -> Received:
        """The mail the sink received for one reader in one issue (by its VERP sender)."""
        sender = envelope_sender(self.settings, issue_id, self.reader(address).id)
        found = [m for m in self.sink.messages if m.mail_from == sender]
        assert len(found) == 1 and found[0].rcpt_tos == [address]
        return found[0]

    def reader(self, address: str) -> Subscriber:
        """A reader, fresh from the database."""
        self.db.expire_all()
        row = self.db.scalar(select(Subscriber).where(Subscriber.email_key == address))
        assert row is not None
        return row

    def delivery(self, address: str, issue_id: int) -> Delivery:
        """One delivery row, fresh."""
        self.db.expire_all()
        row = self.db.scalar(
            select(Delivery).where(
                Delivery.issue_id == issue_id, Delivery.subscriber_id == self.reader(address).id
            )
        )
        assert row is not None
        return row

    def process(self, raw: bytes, **kwargs: Any) -> Outcome:
        """Process one message and commit, as the command does."""
        outcome = process_message(self.db, self.settings, raw, **kwargs)
        self.db.commit()
        return outcome

    def twice(self, raw: bytes, **kwargs: Any) -> Outcome:
        """Process a message, then again: the second run must change nothing."""
        first = self.process(raw, **kwargs)
        state = snapshot(self.db)
        second = self.process(raw, **kwargs)
        assert snapshot(self.db) == state
        assert not second.changed and second.result == first.result
        return first


@pytest.fixture
def world(app: Flask, db: Session, settings: Settings, smtp_sink: SMTPSink) -> World:
    """Offers (alice, bob, carol) and weekly (bob), nothing sent yet."""
    offers = seed.newsletter(db, "offers", kind=NewsletterKind.CAMPAIGN)
    weekly = seed.newsletter(db, "weekly", kind=NewsletterKind.CAMPAIGN)
    seed.reader(db, ALICE, [offers])
    seed.reader(db, BOB, [offers, weekly])
    seed.reader(db, "carol@example.org", [weekly])
    return World(db, settings, smtp_sink, offers, weekly)


def snapshot(db: Session) -> dict[str, list[tuple[Any, ...]]]:
    """Every row inbound processing could touch."""
    db.expire_all()
    return {
        "subscribers": [
            (s.id, s.status, s.updated_at) for s in db.scalars(select(Subscriber).order_by("id"))
        ],
        "subscriptions": [
            (s.id, s.status, s.unsubscribed_at)
            for s in db.scalars(select(Subscription).order_by("id"))
        ],
        "deliveries": [
            (d.id, d.status, d.smtp_code, d.smtp_response)
            for d in db.scalars(select(Delivery).order_by("id"))
        ],
        "suppressions": [
            (s.email_hash, s.reason, s.detail) for s in db.scalars(select(Suppression))
        ],
        "feedback": [
            (e.subscriber_id, e.issue_id, e.kind, e.status, e.detail)
            for e in db.scalars(select(FeedbackEvent).order_by("id"))
        ],
    }


def lf(raw: bytes) -> str:
    """A sent mail as text with LF line ends, to quote inside a report."""
    return raw.replace(b"\r\n", b"\n").decode("utf-8", "replace").rstrip("\n")


def header_block(raw: bytes) -> str:
    """The header section of a sent mail."""
    return lf(raw).split("\n\n", 1)[0]


def postfix_bounce(
    world: World,
    address: str,
    issue_id: int,
    *,
    name: str = "postfix-5.1.1.eml",
    quote: bool = True,
    email: str | None = None,
) -> bytes:
    """A Postfix DSN for the mail one reader got in one issue, sent to its VERP address."""
    mail = world.mail_to(address, issue_id)
    return sample(
        name,
        verp=mail.mail_from,
        email=email or address,
        original_headers=header_block(mail.data) if quote else "X-Nothing: quoted",
    )


def mailto_request(list_unsubscribe: str, sender: str) -> bytes:
    """What a mailbox provider sends for the mailto: in a List-Unsubscribe header."""
    mailto = next(p.strip()[1:-1] for p in list_unsubscribe.split(",") if "mailto:" in p)
    parts = urlsplit(mailto)
    subject = parse_qs(parts.query)["subject"][0]
    return sample(
        "unsubscribe-request.eml", to=unquote(parts.path), subject=subject, **{"from": sender}
    )


# --- VERP ----------------------------------------------------------------------------------------


def test_verp_addresses_read_back_what_the_sender_writes(settings: Settings) -> None:
    verp = replace(settings, bounce_address=BOUNCES)
    address = envelope_sender(verp, 12, 345)
    assert address == "bounces+12-345@news.example.com"
    assert verp_ids(verp, (address.upper(), "someone@else.example")) == [(12, 345)]
    assert verp_ids(verp, ("bounces+12-345@evil.example",)) == []
    assert verp_ids(replace(settings, bounce_address="bounces@news.example.com"), (address,)) == []


# --- hard bounces ---------------------------------------------------------------------------------


def test_postfix_hard_bounce_marks_the_delivery_bounces_the_reader_and_suppresses(
    world: World,
) -> None:
    issue_id = world.send()
    assert (
        world.mail_to(BOB, issue_id).mail_from
        == f"bounces+{issue_id}-{world.reader(BOB).id}@news.example.com"
    )

    outcome = world.twice(postfix_bounce(world, BOB, issue_id))

    assert outcome.result == Result.BOUNCED and outcome.changed
    assert outcome.subscriber_id == world.reader(BOB).id and outcome.issue_id == issue_id
    delivery = world.delivery(BOB, issue_id)
    assert delivery.status == DeliveryStatus.BOUNCED
    assert delivery.smtp_code == 550
    assert "5.1.1" in delivery.smtp_response and "User unknown" in delivery.smtp_response
    assert world.reader(BOB).status == SubscriberStatus.BOUNCED
    suppression = world.db.scalar(select(Suppression))
    assert suppression is not None and suppression.reason == "bounce"
    assert "5.1.1" in suppression.detail
    events = world.db.scalars(select(FeedbackEvent)).all()
    assert [(e.kind, e.issue_id, e.status) for e in events] == [
        (FeedbackKind.HARD_BOUNCE, issue_id, "5.1.1")
    ]
    # Alice, on the same issue, is untouched; the next campaign goes to her and not to Bob.
    assert world.delivery(ALICE, issue_id).status == DeliveryStatus.SENT
    assert world.reader(ALICE).status == SubscriberStatus.ACTIVE
    before = len(world.sink.messages)
    world.send()
    assert [m.rcpt_tos for m in world.sink.messages[before:]] == [[ALICE]]


def test_exim_bounce_without_verp_goes_to_the_latest_delivery_or_the_quoted_one(
    world: World,
) -> None:
    first = world.send(subject="First")
    second = world.send(subject="Second")
    to = "newsletter@news.example.com"  # a plain bounce address: no VERP to go by

    # No copy of the mail quoted: the failed address and our latest delivery to it decide.
    outcome = world.twice(sample("exim-5.1.1.eml", to=to, email=BOB, original_message=""))
    assert outcome.result == Result.BOUNCED and outcome.issue_id == second
    assert world.delivery(BOB, second).status == DeliveryStatus.BOUNCED
    assert world.delivery(BOB, first).status == DeliveryStatus.SENT
    assert "No such user here" in world.delivery(BOB, second).smtp_response

    # A late bounce quoting the first mail (its Message-ID) marks that one.
    quoted = lf(world.mail_to(BOB, first).data)
    outcome = world.process(sample("exim-5.1.1.eml", to=to, email=BOB, original_message=quoted))
    assert outcome.result == Result.BOUNCED and outcome.issue_id == first
    assert world.delivery(BOB, first).status == DeliveryStatus.BOUNCED
    assert world.db.scalar(select(Suppression.reason)) == "bounce"


# --- soft bounces ---------------------------------------------------------------------------------


def test_a_mailbox_full_warning_is_recorded_but_suppresses_only_on_the_third_issue(
    world: World,
) -> None:
    issues = [world.send(subject=f"Offer {i}") for i in range(3)]
    bob_id = world.reader(BOB).id

    outcome = world.twice(postfix_bounce(world, BOB, issues[0], name="postfix-4.2.2-delayed.eml"))
    assert outcome.result == Result.SOFT_BOUNCE and outcome.changed
    assert "4.2.2" in outcome.summary and "1 of 3" in outcome.summary
    assert world.delivery(BOB, issues[0]).status == DeliveryStatus.SENT
    assert world.reader(BOB).status == SubscriberStatus.ACTIVE
    assert not is_suppressed(world.db, BOB)

    world.process(postfix_bounce(world, BOB, issues[1], name="postfix-4.2.2-delayed.eml"))
    assert not is_suppressed(world.db, BOB)
    outcome = world.twice(postfix_bounce(world, BOB, issues[2], name="postfix-4.2.2-delayed.eml"))
    assert "suppressed" in outcome.summary
    assert is_suppressed(world.db, BOB)
    assert world.db.scalar(select(Suppression.reason)) == "soft-bounce"
    assert world.reader(BOB).status == SubscriberStatus.BOUNCED
    kinds = world.db.scalars(
        select(FeedbackEvent.issue_id).where(FeedbackEvent.subscriber_id == bob_id)
    ).all()
    assert sorted(kinds) == sorted(issues)


def test_soft_bounces_older_than_the_window_do_not_count(world: World) -> None:
    issues = [world.send(subject=f"Offer {i}") for i in range(3)]
    long_ago = utcnow() - timedelta(days=45)
    world.process(
        postfix_bounce(world, BOB, issues[0], name="postfix-4.2.2-delayed.eml"), now=long_ago
    )
    for issue_id in issues[1:]:
        world.process(postfix_bounce(world, BOB, issue_id, name="postfix-4.2.2-delayed.eml"))
    assert not is_suppressed(world.db, BOB)
    assert world.reader(BOB).status == SubscriberStatus.ACTIVE


# --- complaints -----------------------------------------------------------------------------------


def test_a_spam_complaint_unsubscribes_from_every_list_and_suppresses(world: World) -> None:
    issue_id = world.send()
    mail = world.mail_to(BOB, issue_id)
    report = sample(
        "arf-complaint.eml",
        feedback_type="abuse",
        verp=mail.mail_from,
        email=BOB,
        original_message=lf(mail.data),
    )

    outcome = world.twice(report)

    assert outcome.result == Result.COMPLAINT and outcome.issue_id == issue_id
    bob = world.reader(BOB)
    assert bob.status == SubscriberStatus.UNSUBSCRIBED
    assert {s.status for s in bob.subscriptions} == {SubscriptionStatus.UNSUBSCRIBED}
    assert world.db.scalar(select(Suppression.reason)) == "complaint"
    event = world.db.scalar(select(FeedbackEvent))
    assert event is not None and (event.kind, event.issue_id) == (FeedbackKind.COMPLAINT, issue_id)
    assert world.delivery(BOB, issue_id).status == DeliveryStatus.SENT  # it was delivered
    assert world.reader(ALICE).status == SubscriberStatus.ACTIVE


def test_a_complaint_with_the_address_redacted_is_tied_to_the_reader_by_our_token(
    world: World,
) -> None:
    issue_id = world.send()
    mail = world.mail_to(BOB, issue_id)
    redacted = lf(mail.data).replace(BOB, "redacted@example.invalid")
    report = sample(
        "arf-complaint.eml",
        feedback_type="abuse",
        verp="",
        email="redacted@example.invalid",
        original_message=redacted,
    )
    outcome = world.process(report)
    assert outcome.result == Result.COMPLAINT and outcome.subscriber_id == world.reader(BOB).id
    assert is_suppressed(world.db, BOB)


def test_a_not_spam_feedback_report_changes_nothing(world: World) -> None:
    issue_id = world.send()
    mail = world.mail_to(BOB, issue_id)
    state = snapshot(world.db)
    report = sample(
        "arf-complaint.eml",
        feedback_type="not-spam",
        verp=mail.mail_from,
        email=BOB,
        original_message=lf(mail.data),
    )
    assert world.process(report).result == Result.UNKNOWN
    assert snapshot(world.db) == state


# --- reports that prove nothing -------------------------------------------------------------------


def test_reports_that_do_not_prove_whose_mail_it_was_change_nothing(world: World) -> None:
    issue_id = world.send()
    alice_id = world.reader(ALICE).id
    state = snapshot(world.db)

    # A forged bounce to Alice's VERP address (ids are guessable) naming another address.
    forged = sample(
        "postfix-5.1.1.eml",
        verp=f"bounces+{issue_id}-{alice_id}@news.example.com",
        email="mallory@example.net",
        original_headers="X-Nothing: quoted",
    )
    # A bounce for Carol, whom this issue never mailed; one for an address we do not know.
    carol = sample(
        "postfix-5.1.1.eml",
        verp=f"bounces+{issue_id}-{world.reader('carol@example.org').id}@news.example.com",
        email="carol@example.org",
        original_headers="X-Nothing: quoted",
    )
    stranger = sample(
        "exim-5.1.1.eml",
        to="newsletter@news.example.com",
        email="who@example.net",
        original_message="",
    )
    # A complaint that names nobody we mailed and quotes no mail of ours.
    complaint = sample(
        "arf-complaint.eml",
        feedback_type="abuse",
        verp=f"bounces+{issue_id}-{alice_id}@news.example.com",
        email="redacted@example.invalid",
        original_message="From: someone@example.net\nSubject: hi\n\nhello",
    )
    for report in (forged, carol, stranger, complaint):
        outcome = world.process(report)
        assert outcome.result == Result.IGNORED, outcome
        assert not outcome.changed
    assert snapshot(world.db) == state


# --- mailto unsubscribe requests ------------------------------------------------------------------


def test_the_mailto_of_a_real_list_unsubscribe_header_unsubscribes(world: World) -> None:
    issue_id = world.send()
    header = world.mail_to(BOB, issue_id).message["List-Unsubscribe"]
    request = mailto_request(str(header), sender=BOB)

    outcome = world.twice(request)

    assert outcome.result == Result.UNSUBSCRIBED and "offers" in outcome.summary
    bob = world.reader(BOB)
    statuses = {s.newsletter_id: s.status for s in bob.subscriptions}
    assert statuses[world.offers.id] == SubscriptionStatus.UNSUBSCRIBED
    assert statuses[world.weekly.id] == SubscriptionStatus.ACTIVE  # the token named one list
    assert bob.status == SubscriberStatus.ACTIVE
    assert not is_suppressed(world.db, BOB)  # leaving is not a suppression


def test_a_manage_token_in_the_mailto_leaves_every_list(world: World) -> None:
    bob = world.reader(BOB)
    token = links.unsubscribe_token(world.settings, bob.id, bob.token_version, None)
    mailto = links.unsubscribe_mailto(world.settings, token)
    outcome = world.twice(mailto_request(f"<{mailto}>", sender="anyone@example.net"))
    assert outcome.result == Result.UNSUBSCRIBED
    bob = world.reader(BOB)
    assert bob.status == SubscriberStatus.UNSUBSCRIBED
    assert {s.status for s in bob.subscriptions} == {SubscriptionStatus.UNSUBSCRIBED}


def test_forged_revoked_or_missing_tokens_are_ignored_and_reported(world: World) -> None:
    bob = world.reader(BOB)
    good = links.unsubscribe_token(world.settings, bob.id, bob.token_version, None)
    other_secret = replace(world.settings, secret_key="another-secret-key-0123456789-abcdefghij")
    forged = [
        good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB"),  # tampered signature
        links.unsubscribe_token(other_secret, bob.id, bob.token_version, None),
        links.unsubscribe_token(world.settings, bob.id, bob.token_version + 1, None),  # revoked
    ]
    state = snapshot(world.db)
    for token in forged:
        request = mailto_request(f"<{links.unsubscribe_mailto(world.settings, token)}>", sender=BOB)
        outcome = world.process(request)
        assert outcome.result == Result.IGNORED and "token" in outcome.summary
    # The From address alone is spoofable: "unsubscribe" without a token does nothing.
    bare = sample(
        "unsubscribe-request.eml",
        to="unsubscribe@news.example.com",
        subject="unsubscribe",
        **{"from": BOB},
    )
    outcome = world.process(bare)
    assert outcome.result == Result.IGNORED and "proves nothing" in outcome.summary
    assert snapshot(world.db) == state
    assert world.reader(BOB).status == SubscriberStatus.ACTIVE


# --- junk -----------------------------------------------------------------------------------------


def test_junk_is_reported_never_raised(settings: Settings, db: Session) -> None:
    s = settings
    cases = {
        b"": Result.INVALID,
        (DATA / "junk.bin").read_bytes(): Result.INVALID,
        (DATA / "not-mail.txt").read_bytes(): Result.INVALID,
        (DATA / "out-of-office.eml").read_bytes(): Result.UNKNOWN,
        sample("postfix-5.1.1.eml")[:700]: Result.UNKNOWN,  # cut off before the report
    }
    for raw, expected in cases.items():
        outcome = process_message(db, s, raw)
        assert outcome.result == expected, (raw[:40], outcome)
    # What a report says is printed only as one line of printable characters.
    escape = sample("arf-complaint.eml", feedback_type="x\x1b[2J\x07y", original_message="")
    outcome = process_message(db, s, escape)
    assert outcome.result == Result.UNKNOWN and outcome.line().isprintable()
    big = b"Subject: big\n\n" + b"x" * 2000
    outcome = process_message(db, replace(s, inbound_max_bytes=1000), big)
    assert outcome.result == Result.INVALID and "larger than 1000 bytes" in outcome.summary


def test_mangled_reports_never_crash(settings: Settings, db: Session) -> None:
    s = settings
    rng = random.Random(8)
    originals = [
        sample(
            name,
            verp="bounces+1-1@news.example.com",
            email=BOB,
            to="x@news.example.com",
            feedback_type="abuse",
            original_headers="Message-ID: <a@b>",
            original_message="Subject: hi\n\nbody",
            subject="unsubscribe-abc.def",
            **{"from": BOB},
        )
        for name in (
            "postfix-5.1.1.eml",
            "postfix-4.2.2-delayed.eml",
            "exim-5.1.1.eml",
            "arf-complaint.eml",
            "unsubscribe-request.eml",
        )
    ]
    for _ in range(300):
        raw = bytearray(rng.choice(originals))
        for _flip in range(rng.randint(1, 20)):
            pos = rng.randrange(len(raw))
            raw[pos] = rng.choice([0, 10, 13, 32, 45, 59, 61, 255, rng.randrange(256)])
        if rng.random() < 0.3:
            raw = raw[: rng.randrange(len(raw))]
        outcome = process_message(db, s, bytes(raw))
        assert isinstance(outcome.result, Result)
        assert not outcome.changed  # nobody in this database was mailed
