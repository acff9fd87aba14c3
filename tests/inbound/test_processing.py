"""Inbound mail: bounces, spam complaints and mailto unsubscribes close the loop of what we send.

The reports quote mail our own dispatch really sent (a campaign through the real send path to an
aiosmtpd sink, with VERP on), filled into the samples of tests/data/inbound. Database outcomes
are asserted on SQLite and PostgreSQL, and every report is processed twice: the second time
must change nothing at all.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from email import message_from_bytes
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.delivery import batches, fan_out
from newsletter.inbound.processing import Result, process_message, verp_ids
from newsletter.issues import lifecycle
from newsletter.issues.rendering import envelope_sender
from newsletter.mail.verp import verp_tag
from newsletter.readers import links
from newsletter.readers.suppression import is_suppressed
from newsletter.settings import Settings
from newsletter.store.db import utcnow
from newsletter.store.models import (
    DeliveryStatus,
    FeedbackEvent,
    FeedbackKind,
    IssueStatus,
    SubscriberStatus,
    SubscriptionStatus,
    Suppression,
)
from tests.support import dispatching as seed
from tests.support.hostile_mail import huge_header, naming, nested, wide
from tests.support.inbound import (
    ALICE,
    BOB,
    BOUNCES,
    CAROL,
    DATA,
    World,
    header_block,
    lf,
    postfix_bounce,
    sample,
    sending,
    snapshot,
    unmatched_reports,
)
from tests.support.services import migrated_postgres_database
from tests.support.smtp import SMTPSink

# --- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(
    request: pytest.FixtureRequest, settings: Settings, smtp_sink: SMTPSink
) -> Iterator[Settings]:
    """conftest's settings on SQLite or PostgreSQL, sending to the sink with a VERP address."""
    real_sends = sending(settings, smtp_sink)
    if request.param == "sqlite":
        yield real_sends
        return
    with migrated_postgres_database() as url:
        yield replace(real_sends, database_url=url)


def mailto_request(list_unsubscribe: str, sender: str) -> bytes:
    """What a mailbox provider sends for the mailto: in a List-Unsubscribe header."""
    mailto = next(p.strip()[1:-1] for p in list_unsubscribe.split(",") if "mailto:" in p)
    parts = urlsplit(mailto)
    subject = parse_qs(parts.query)["subject"][0]
    return sample(
        "unsubscribe-request.eml", to=unquote(parts.path), subject=subject, **{"from": sender}
    )


# --- VERP ----------------------------------------------------------------------------------------


def test_verp_addresses_read_back_what_the_sender_writes_and_only_that(settings: Settings) -> None:
    verp = replace(settings, bounce_address=BOUNCES)
    address = envelope_sender(verp, 12, 345)
    assert address == f"bounces+12-345-{verp_tag(settings.secret_key, 12, 345)}@news.example.com"
    assert verp_ids(verp, (address.upper(), "someone@else.example")) == [(12, 345)]
    assert verp_ids(verp, (address.replace("news.example.com", "evil.example"),)) == []
    assert verp_ids(verp, ("bounces+12-345@news.example.com",)) == []  # unsigned: guessable
    assert verp_ids(verp, (envelope_sender(verp, 12, 346).replace("-346-", "-345-"),)) == []
    assert verp_ids(replace(settings, bounce_address="bounces@news.example.com"), (address,)) == []


# --- hard bounces ---------------------------------------------------------------------------------


def test_postfix_hard_bounce_marks_the_delivery_bounces_the_reader_and_suppresses(
    world: World,
) -> None:
    issue_id = world.send()
    bob_id = world.reader(BOB).id
    tag = verp_tag(world.settings.secret_key, issue_id, bob_id)
    assert (
        world.mail_to(BOB, issue_id).mail_from
        == f"bounces+{issue_id}-{bob_id}-{tag}@news.example.com"
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


def test_a_bounce_without_verp_acts_only_on_the_message_id_it_quotes(world: World) -> None:
    first = world.send(subject="First")
    second = world.send(subject="Second")
    to = "newsletter@news.example.com"  # a plain bounce address: no VERP to go by
    state = snapshot(world.db)

    # No copy of the mail quoted: the failed address alone proves nothing.
    outcome = world.twice(sample("exim-5.1.1.eml", to=to, email=BOB, original_message=""))
    assert outcome.result == Result.UNMATCHED and not outcome.changed
    assert outcome.line().startswith("unmatched: bounce naming 1 address(es)")
    assert "did not come to a VERP address" in outcome.summary
    assert "quotes no Message-ID" in outcome.summary
    assert snapshot(world.db) == state and unmatched_reports(world.db) == 1

    # A bounce quoting the first mail (our Message-ID, to that address) marks that one at once.
    quoted = lf(world.mail_to(BOB, first).data)
    outcome = world.twice(sample("exim-5.1.1.eml", to=to, email=BOB, original_message=quoted))
    assert outcome.result == Result.BOUNCED and outcome.issue_id == first
    assert world.delivery(BOB, first).status == DeliveryStatus.BOUNCED
    assert "No such user here" in world.delivery(BOB, first).smtp_response
    assert world.delivery(BOB, second).status == DeliveryStatus.SENT
    assert world.reader(BOB).status == SubscriberStatus.BOUNCED
    assert world.db.scalar(select(Suppression.reason)) == "bounce"
    assert unmatched_reports(world.db) == 1


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


def test_forged_soft_bounces_are_not_counted(world: World) -> None:
    issues = [world.send(subject=f"Offer {i}") for i in range(3)]
    bob_id = world.reader(BOB).id
    state = snapshot(world.db)
    for issue_id in issues:
        # Guessable ids without the tag, and the bare bounce address: three "issues" of failures.
        for verp in (f"bounces+{issue_id}-{bob_id}@news.example.com", "bounces@news.example.com"):
            report = sample(
                "postfix-4.2.2-delayed.eml", verp=verp, email=BOB, original_headers="X: y"
            )
            assert world.twice(report).result == Result.UNMATCHED
    # The bare-address report is the same message each time: recorded once.
    assert snapshot(world.db) == state and unmatched_reports(world.db) == 4

    # The genuine warning that follows counts as the first, not the fourth.
    outcome = world.twice(postfix_bounce(world, BOB, issues[0], name="postfix-4.2.2-delayed.eml"))
    assert outcome.result == Result.SOFT_BOUNCE and "1 of 3" in outcome.summary
    assert not is_suppressed(world.db, BOB)


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


# --- the deliverability guard ---------------------------------------------------------------------


def half_sent(
    world: World, settings: Settings, readers: int = 20
) -> tuple[int, list[str], seed.InlineQueue]:
    """A campaign to ``readers`` more readers whose first batch of 10 went out, the rest
    queued (the send still running); returns the issue, who got it, and the queue."""
    for i in range(readers):
        seed.reader(world.db, f"reader{i:02d}@example.org", [world.offers])
    issue = lifecycle.create_campaign(
        world.db, settings, world.offers, subject="Offer", body_html="<p>Half price.</p>"
    )
    world.db.commit()
    queue = seed.InlineQueue(settings)
    lifecycle.send(world.db, settings, issue.id, queue)
    kind, issue_id, _, _ = queue.tasks.popleft()
    assert kind == "fan_out"
    fan_out.advance(settings, issue_id, queue)
    kind, _, ids, _ = queue.tasks.popleft()
    assert kind == "send_batch"
    assert batches.send_batch(settings, issue_id, ids, queue=queue).sent == 10
    mailed = [m.rcpt_tos[0] for m in world.sink.messages]
    return issue_id, mailed, queue


def complaint(world: World, address: str, issue_id: int) -> bytes:
    """An ARF abuse report about the mail one reader got in one issue, to its VERP address."""
    mail = world.mail_to(address, issue_id)
    return sample(
        "arf-complaint.eml",
        feedback_type="abuse",
        verp=mail.mail_from,
        email=address,
        original_message=lf(mail.data),
    )


def test_complaints_about_a_running_send_pause_it_at_the_complaint_limit(world: World) -> None:
    settings = replace(world.settings, batch_size=10, guard_complaint_rate=0.2, guard_min_sample=10)
    world.settings = settings
    issue_id, mailed, queue = half_sent(world, settings)

    # 20% of at least 10 mails allows 2 complaints: the first is counted, the second pauses.
    assert world.twice(complaint(world, mailed[0], issue_id)).result == Result.COMPLAINT
    issue = lifecycle.get_issue(world.db, issue_id)
    assert (issue.status, issue.complaint_count) == (IssueStatus.SENDING, 1)
    assert world.twice(complaint(world, mailed[1], issue_id)).result == Result.COMPLAINT
    world.db.expire_all()
    issue = lifecycle.get_issue(world.db, issue_id)
    assert (issue.status, issue.complaint_count) == (IssueStatus.PAUSED, 2)
    assert issue.status_reason.startswith(
        "auto-paused: 2 of 10 mails (20%) were reported as spam, one more would pass the 20% "
        "limit (NEWSLETTER_GUARD_COMPLAINT_RATE)."
    )

    # The rest stays queued: the next batch finds the issue paused and sends nothing.
    queue.drain()
    assert len(world.sink.messages) == 10
    # A complaint about a paused send is counted; the reason it was paused for stays.
    reason = issue.status_reason
    assert world.process(complaint(world, mailed[2], issue_id)).result == Result.COMPLAINT
    world.db.expire_all()
    issue = lifecycle.get_issue(world.db, issue_id)
    assert (issue.status, issue.complaint_count) == (IssueStatus.PAUSED, 3)
    assert issue.status_reason == reason


def test_a_hard_bounce_reported_later_counts_for_its_send(world: World) -> None:
    issue_id = world.send()
    assert world.twice(postfix_bounce(world, BOB, issue_id)).result == Result.BOUNCED
    world.db.expire_all()
    issue = lifecycle.get_issue(world.db, issue_id)
    # Counted once; the send had finished, so the guard has nothing to pause.
    assert (issue.bounce_count, issue.mailed_count, issue.status) == (1, 2, IssueStatus.SENT)


# --- reports that prove nothing -------------------------------------------------------------------


def without_tokens(raw: bytes, to: str) -> bytes:
    """A mail we sent, readdressed and without its List-Unsubscribe (and so without tokens)."""
    message = message_from_bytes(raw)
    del message["List-Unsubscribe"], message["List-Unsubscribe-Post"], message["To"]
    message["To"] = to
    return message.as_bytes()


def forged_return_paths(world: World, issue_id: int) -> dict[str, str]:
    """Where a forger could send a report about Bob's mail in this issue, none of them signed
    for it: the bare bounce address, his ids with no tag or a made-up one, his ids with the tag
    Alice got (she knows her own return path), his ids with his tag of another issue, Carol's
    signed address of an issue she never got."""
    bob, alice, carol = (world.reader(a).id for a in (BOB, ALICE, CAROL))
    secret = world.settings.secret_key
    ids = f"bounces+{issue_id}-{bob}"
    return {
        "bare": "bounces@news.example.com",
        "no tag": f"{ids}@news.example.com",
        "made-up tag": f"{ids}-abcdefghijkl@news.example.com",
        "alice's tag": f"{ids}-{verp_tag(secret, issue_id, alice)}@news.example.com",
        "another issue's tag": f"{ids}-{verp_tag(secret, issue_id + 1, bob)}@news.example.com",
        "carol, never mailed": envelope_sender(world.settings, issue_id, carol),
    }


def test_forged_bounces_naming_a_real_reader_change_no_reader(world: World) -> None:
    issue_id = world.send()
    alice_mail = world.mail_to(ALICE, issue_id)
    state = snapshot(world.db)
    forged = {
        why: sample("postfix-5.1.1.eml", verp=verp, email=BOB, original_headers="X-Nothing: y")
        for why, verp in forged_return_paths(world, issue_id).items()
    }
    quoting = {
        "made-up Message-ID": f"Message-ID: <made-up@news.example.com>\nTo: {BOB}",
        # A real Message-ID of ours, but of Alice's mail: it does not belong to Bob's address.
        "alice's Message-ID": header_block(without_tokens(alice_mail.data, BOB)),
    }
    for why, headers in quoting.items():
        forged[why] = sample(
            "postfix-5.1.1.eml",
            verp="bounces@news.example.com",
            email=BOB,
            original_headers=headers,
        )
    forged["exim, made-up Message-ID"] = sample(
        "exim-5.1.1.eml",
        to="bounces@news.example.com",
        email=BOB,
        original_message=f"Message-ID: <made-up@news.example.com>\nTo: {BOB}\nSubject: x\n\nx",
    )
    for why, report in forged.items():
        outcome = world.twice(report)
        assert outcome.result == Result.UNMATCHED and not outcome.changed, (why, outcome)
        assert outcome.line().startswith("unmatched: bounce naming 1 address(es)"), why
    assert snapshot(world.db) == state
    assert unmatched_reports(world.db) == len(forged)
    assert world.reader(BOB).status == SubscriberStatus.ACTIVE and not is_suppressed(world.db, BOB)
    wrong = world.process(forged["alice's tag"])
    assert "its VERP address has no valid signature" in wrong.summary
    never = world.process(forged["carol, never mailed"])
    assert "names a mail we did not send" in never.summary


def test_forged_complaints_naming_a_real_reader_change_no_reader(world: World) -> None:
    issue_id = world.send()
    alice_mail = world.mail_to(ALICE, issue_id)
    state = snapshot(world.db)
    made_up = f"Message-ID: <made-up@news.example.com>\nTo: {BOB}\nSubject: Offer\n\nHi"
    forged = {
        why: sample(
            "arf-complaint.eml",
            feedback_type="abuse",
            verp=verp,
            email=BOB,
            original_message=made_up,
        )
        for why, verp in forged_return_paths(world, issue_id).items()
    }
    # Alice's real mail readdressed to Bob: the Message-ID is ours, but not of a mail to Bob.
    alice_copy = lf(without_tokens(alice_mail.data, BOB))
    forged["alice's Message-ID"] = sample(
        "arf-complaint.eml",
        feedback_type="abuse",
        verp="bounces@news.example.com",
        email=BOB,
        original_message=alice_copy,
    )
    for why, report in forged.items():
        outcome = world.twice(report)
        assert outcome.result == Result.UNMATCHED and not outcome.changed, (why, outcome)
        assert outcome.line().startswith("unmatched: complaint naming 1 address(es)"), why
    assert snapshot(world.db) == state
    assert unmatched_reports(world.db) == len(forged)
    bob = world.reader(BOB)
    assert bob.status == SubscriberStatus.ACTIVE and not is_suppressed(world.db, BOB)
    assert {s.status for s in bob.subscriptions} == {SubscriptionStatus.ACTIVE}


def test_a_bounce_for_an_address_we_do_not_know_is_unmatched(world: World) -> None:
    world.send()
    state = snapshot(world.db)
    stranger = sample(
        "exim-5.1.1.eml",
        to="bounces@news.example.com",
        email="who@example.net",
        original_message="",
    )
    outcome = world.twice(stranger)
    assert outcome.result == Result.UNMATCHED and snapshot(world.db) == state


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
    token = links.unsubscribe_token(world.settings, links.subscriber_claim(bob))
    mailto = links.unsubscribe_mailto(world.settings, token)
    outcome = world.twice(mailto_request(f"<{mailto}>", sender="anyone@example.net"))
    assert outcome.result == Result.UNSUBSCRIBED
    bob = world.reader(BOB)
    assert bob.status == SubscriberStatus.UNSUBSCRIBED
    assert {s.status for s in bob.subscriptions} == {SubscriptionStatus.UNSUBSCRIBED}


def test_a_token_from_before_log_out_all_links_still_leaves(world: World) -> None:
    bob = world.reader(BOB)
    old = links.unsubscribe_token(world.settings, links.subscriber_claim(bob))
    bob.token_version += 1
    world.db.commit()
    mailto = links.unsubscribe_mailto(world.settings, old)
    outcome = world.process(mailto_request(f"<{mailto}>", sender=BOB))
    assert outcome.result == Result.UNSUBSCRIBED
    assert world.reader(BOB).status == SubscriberStatus.UNSUBSCRIBED


def test_forged_revoked_or_missing_tokens_are_ignored_and_reported(world: World) -> None:
    bob = world.reader(BOB)
    good = links.unsubscribe_token(world.settings, links.subscriber_claim(bob))
    other_secret = replace(world.settings, secret_key="another-secret-key-0123456789-abcdefghij")
    forged = [
        good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB"),  # tampered signature
        links.unsubscribe_token(other_secret, links.subscriber_claim(bob)),
        links.unsubscribe_token(
            world.settings, links.claim_for(bob.id, bob.token_version + 1, bob.email)
        ),  # a version never issued
        links.unsubscribe_token(
            world.settings, links.claim_for(bob.id, bob.token_version, "someone.else@example.com")
        ),  # signed for another address
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


# --- messages beyond a limit ---------------------------------------------------------------------


def test_a_genuine_report_made_hostile_is_refused_and_changes_no_row(world: World) -> None:
    issue_id = world.send()
    report = postfix_bounce(world, BOB, issue_id)
    mail = world.mail_to(BOB, issue_id)
    complaint = sample(
        "arf-complaint.eml",
        feedback_type="abuse",
        verp=mail.mail_from,
        email=BOB,
        original_message=lf(mail.data),
    )
    hostile = {
        "depth": nested(report, 1000),
        "parts": wide(report, 10_000),
        "recipients": naming(report, 5_000),
        "headers": huge_header(report, 1_000_000),
    }
    state, unmatched = snapshot(world.db), unmatched_reports(world.db)
    for limit, raw in [*hostile.items(), ("recipients", naming(complaint, 5_000))]:
        outcome = world.process(raw)
        assert outcome.result == Result.REFUSED and outcome.limit == limit, outcome
        assert not outcome.changed and not outcome.parsed
        assert outcome.line().startswith("refused: ") and outcome.line().isprintable()
    assert snapshot(world.db) == state and unmatched_reports(world.db) == unmatched

    # The same report within the limits is acted on: only the refusal stopped it above.
    assert world.process(nested(report, 5)).result == Result.BOUNCED
    assert world.reader(BOB).status == SubscriberStatus.BOUNCED


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
    assert outcome.result == Result.REFUSED and "larger than 1000 bytes" in outcome.summary
    assert outcome.limit == "size" and not outcome.parsed


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
