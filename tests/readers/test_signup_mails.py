"""The transactional mails: structure, headers, links, the rules that stop them, the tasks."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsletter.mail.transport import TemporaryFailure
from newsletter.readers.signup import Signup, subscribe
from newsletter.readers.signup_mails import (
    MailOutcome,
    send_already_subscribed,
    send_confirmation,
    send_welcome,
)
from newsletter.readers.suppression import suppress
from newsletter.settings import Settings
from newsletter.store.db import utcnow
from newsletter.store.models import (
    ConsentRecord,
    SignupMailLog,
    Subscriber,
    SubscriberStatus,
    SubscriptionStatus,
)
from tests.support.readers import (
    Lists,
    add_subscriber,
    html_part,
    link_in,
    mails,
    make_lists,
    path_of,
    text_part,
)
from tests.support.smtp import SMTPSink
from worker import tasks


@pytest.fixture
def lists(db: Session) -> Lists:
    return make_lists(db)


@pytest.fixture
def ctx(app: Flask) -> Iterator[Flask]:
    with app.app_context():
        yield app


def _pending(db: Session, settings: Settings, lists: Lists, address: str = "p@example.com") -> int:
    result = subscribe(
        db,
        settings,
        Signup(
            email=address,
            newsletter_ids=(lists.daily.id, lists.offers.id),
            name="Typed By A Stranger",
            consent_text="t",
        ),
    )
    db.commit()
    assert result.consent_id is not None
    return result.consent_id


def test_confirmation_mail_is_well_formed(
    ctx: Flask, db: Session, settings: Settings, lists: Lists
) -> None:
    consent_id = _pending(db, settings, lists)
    result = send_confirmation(db, settings, ctx.jinja_env, consent_id)
    db.commit()
    assert result.outcome == MailOutcome.SENT
    [msg] = mails(settings)
    assert msg["From"] == "The Daily Brief <newsletter@news.example.com>"
    assert msg["To"] == "p@example.com"
    assert msg["Subject"] == "Please confirm your subscription to The Daily Brief"
    assert msg["Message-ID"].endswith("@news.example.com>")
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    # Not a list mail yet: no list headers, and nothing the stranger typed.
    assert msg["List-Unsubscribe"] is None
    assert "Stranger" not in msg.as_string()

    text, html = text_part(msg), html_part(msg)
    link = link_in(msg, "/confirm/")
    assert link in html
    assert link in text.splitlines(), "the link sits on a line of its own"
    assert "Morning Briefing" in text and "Offers & Announcements" in text
    assert "7 days" in text
    assert "1 Example Street" in text and "1 Example Street" in html
    for line in text.splitlines():
        assert len(line) <= 78 or line.startswith("http"), line
    # Mail-client-safe HTML: tables, inlined styles, 600px, dark-mode aware.
    assert 'role="presentation"' in html and "max-width: 600px" in html
    assert 'name="color-scheme" content="light dark"' in html
    assert "prefers-color-scheme: dark" in html
    button = re.search(r'<a class="button" href="[^"]+" style="([^"]*)"', html)
    assert button and "color: #ffffff" in button.group(1), "white text on the red button"
    assert "<img" not in html or re.search(r"<img [^>]*alt=", html)
    row = db.scalar(select(SignupMailLog))
    assert row is not None and row.kind == "confirm" and "@" not in row.email_hash


def test_welcome_mail_carries_list_headers_and_working_links(
    ctx: Flask, db: Session, settings: Settings, lists: Lists
) -> None:
    reader = add_subscriber(
        db,
        "w@example.com",
        SubscriberStatus.ACTIVE,
        [lists.daily, lists.weekly],
        name="Wanda Reader",
    )
    result = send_welcome(db, settings, ctx.jinja_env, reader.id, [lists.weekly.id])
    assert result.sent
    [msg] = mails(settings)
    assert msg["List-Id"] == "Morning Briefing <daily.news.example.com>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    https, mailto = re.findall(r"<([^>]+)>", msg["List-Unsubscribe"])
    assert https.startswith("http://127.0.0.1:5000/unsubscribe/")
    assert mailto.startswith("mailto:unsubscribe@news.example.com?subject=unsubscribe-")
    text = text_part(msg)
    assert "WELCOME, WANDA!" in text and "Weekend Reads (weekly)" in text  # the first name
    assert "Welcome, Wanda!" in html_part(msg)
    assert "You also stay subscribed to Morning Briefing." in text
    assert link_in(msg, "/preferences/") in html_part(msg)
    assert link_in(msg, "/unsubscribe/") == https

    # The one-click link in the header really leaves every list.
    client = ctx.test_client()
    response = client.post(path_of(https), data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    db.expire_all()
    found = db.get(Subscriber, reader.id)
    assert found is not None and found.status == SubscriberStatus.UNSUBSCRIBED
    assert {s.status for s in found.subscriptions} == {SubscriptionStatus.UNSUBSCRIBED}


def test_welcome_for_lists_already_left_sends_nothing(
    ctx: Flask, db: Session, settings: Settings, lists: Lists
) -> None:
    reader = add_subscriber(db, "x@example.com", SubscriberStatus.UNSUBSCRIBED, [lists.daily])
    result = send_welcome(db, settings, ctx.jinja_env, reader.id, [lists.daily.id])
    assert result.outcome == MailOutcome.NOTHING_TO_SAY and mails(settings) == []


def test_already_subscribed_note(ctx: Flask, db: Session, settings: Settings, lists: Lists) -> None:
    reader = add_subscriber(db, "a@example.com", SubscriberStatus.ACTIVE, [lists.daily])
    assert send_already_subscribed(db, settings, ctx.jinja_env, reader.id).sent
    [msg] = mails(settings)
    assert msg["Subject"] == "You are already subscribed to The Daily Brief"
    assert "Morning Briefing (daily)" in text_part(msg)
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "/confirm/" not in msg.as_string()
    link_in(msg, "/preferences/")


def test_suppressed_addresses_get_no_mail(
    ctx: Flask, db: Session, settings: Settings, lists: Lists
) -> None:
    consent_id = _pending(db, settings, lists, "s@example.com")
    reader = add_subscriber(db, "t@example.com", SubscriberStatus.ACTIVE, [lists.daily])
    suppress(db, "s@example.com", "bounce")
    suppress(db, "t@example.com", "complaint")
    db.commit()
    env = ctx.jinja_env
    assert send_confirmation(db, settings, env, consent_id).outcome == MailOutcome.SUPPRESSED
    assert send_welcome(db, settings, env, reader.id, [lists.daily.id]).outcome == (
        MailOutcome.SUPPRESSED
    )
    assert send_already_subscribed(db, settings, env, reader.id).outcome == MailOutcome.SUPPRESSED
    assert mails(settings) == []


def test_daily_cap_counts_confirmations_and_notes_per_address(
    ctx: Flask, db: Session, settings: Settings, lists: Lists
) -> None:
    capped = replace(settings, signup_mails_per_day=2)
    env = ctx.jinja_env
    first = _pending(db, settings, lists, "cap@example.com")
    second = _pending(db, settings, lists, "cap@example.com")
    third = _pending(db, settings, lists, "cap@example.com")
    outcomes = [send_confirmation(db, capped, env, c).outcome for c in (first, second, third)]
    db.commit()
    assert outcomes == [MailOutcome.SENT, MailOutcome.SENT, MailOutcome.CAPPED]
    # A day later the address may receive mail again.
    later = utcnow() + timedelta(days=1, minutes=1)
    assert send_confirmation(db, capped, env, third, now=later).outcome == MailOutcome.SENT
    assert len(mails(settings)) == 3


def test_daily_cap_is_shared_by_every_spelling_of_one_inbox(
    ctx: Flask, db: Session, settings: Settings, lists: Lists
) -> None:
    capped = replace(settings, signup_mails_per_day=2)
    env = ctx.jinja_env
    # Two readers (the address is stored as typed), one Gmail inbox.
    spellings = ["A.B.c+x@googlemail.com", "abc@gmail.com", "a.bc+y@gmail.com"]
    consents = [_pending(db, settings, lists, address) for address in spellings]
    outcomes = [send_confirmation(db, capped, env, c).outcome for c in consents]
    db.commit()
    assert outcomes == [MailOutcome.SENT, MailOutcome.SENT, MailOutcome.CAPPED]
    assert len(db.scalars(select(Subscriber)).all()) == 3
    assert len(set(db.scalars(select(SignupMailLog.email_hash)))) == 1
    # With +tags counted as inboxes of their own, the tagged spelling has its own cap.
    untagged = replace(capped, inbox_strip_plus_tags=False)
    assert send_confirmation(db, untagged, env, consents[2]).outcome == MailOutcome.SENT


def test_confirmed_or_purged_consent_sends_nothing(
    ctx: Flask, db: Session, settings: Settings, lists: Lists
) -> None:
    consent_id = _pending(db, settings, lists)
    record = db.get(ConsentRecord, consent_id)
    assert record is not None
    record.confirmed_at = utcnow()
    db.commit()
    env = ctx.jinja_env
    assert send_confirmation(db, settings, env, consent_id).outcome == MailOutcome.NOTHING_TO_SAY
    assert send_confirmation(db, settings, env, 999999).outcome == MailOutcome.GONE
    assert send_welcome(db, settings, env, 999999, [1]).outcome == MailOutcome.GONE
    assert mails(settings) == []


def test_tasks_run_inside_the_app(
    app: Flask, db: Session, settings: Settings, lists: Lists
) -> None:

    consent_id = _pending(db, settings, lists)
    reader = add_subscriber(db, "task@example.com", SubscriberStatus.ACTIVE, [lists.daily])
    with app.app_context():
        assert tasks.send_confirmation.run(consent_id) == "sent"
        assert tasks.send_already_subscribed.run(reader.id) == "sent"
        assert tasks.send_welcome.run(reader.id, [lists.daily.id]) == "sent"
        assert tasks.purge_pending.run() == {
            "subscribers": 0,
            "subscriptions": 0,
            "consent_records": 0,
            "mail_log": 0,
            "erased_consents": 0,
        }
    assert [m["Subject"] for m in mails(settings)] == [
        "Please confirm your subscription to The Daily Brief",
        "You are already subscribed to The Daily Brief",
        "Welcome to The Daily Brief",
    ]
    # The cap is recorded by the task's own (committed) session.
    db.expire_all()
    assert db.scalar(select(func.count(SignupMailLog.id))) == 2


def test_purge_task_forgets_expired_signups(
    app: Flask, db: Session, settings: Settings, lists: Lists
) -> None:

    old = utcnow() - timedelta(days=settings.confirm_expiry_days, hours=1)
    result = subscribe(
        db, settings, Signup(email="old@example.com", newsletter_ids=(lists.daily.id,)), now=old
    )
    db.commit()
    with app.app_context():
        summary = tasks.purge_pending.run()
    assert summary["subscribers"] == 1 and summary["consent_records"] == 1
    db.expire_all()
    assert db.get(Subscriber, result.subscriber_id) is None


def test_smtp_temporary_failure_propagates_for_retry_and_5xx_is_final(
    app: Flask, db: Session, smtp_settings: Settings, smtp_sink: SMTPSink, lists: Lists
) -> None:
    consent_id = _pending(db, smtp_settings, lists, "retry@example.com")
    with app.app_context():
        env = app.jinja_env
        smtp_sink.handler.fail_all_with = "451 4.3.0 try again later"
        with pytest.raises(TemporaryFailure):
            send_confirmation(db, smtp_settings, env, consent_id)
        db.rollback()
        # The failed try does not count towards the daily cap.
        assert db.scalar(select(func.count(SignupMailLog.id))) == 0
        smtp_sink.handler.fail_all_with = "550 5.1.1 no such user"
        assert send_confirmation(db, smtp_settings, env, consent_id).outcome == (
            MailOutcome.REJECTED
        )
        smtp_sink.handler.fail_all_with = None
        assert send_confirmation(db, smtp_settings, env, consent_id).sent
    [received] = smtp_sink.wait_for(1)
    assert received.rcpt_tos == ["retry@example.com"]
    assert received.message["Subject"] == "Please confirm your subscription to The Daily Brief"
