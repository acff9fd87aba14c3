"""Erasing a reader: personal data gone from every table, the suppression hash and a
pseudonymised consent proof kept, and a new signup only through a new double opt-in.

The domain tests run on SQLite and PostgreSQL; the reader's own "erase my data" button is tested
through the pages (signup → confirmation mail → confirm → data link → erase → sign up again).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from newsletter.readers.addresses import email_hash
from newsletter.readers.confirmation import read_confirmation
from newsletter.readers.consent import record_consent
from newsletter.readers.erasure import (
    ReaderNotFound,
    erase,
    erased_consents,
    find_reader,
    suppress_reader,
    unsubscribe_reader,
)
from newsletter.readers.purge import purge_pending
from newsletter.readers.signup import SignupAction, confirm_token_for, subscribe
from newsletter.readers.subscriptions import InvalidLink
from newsletter.readers.suppression import is_suppressed, suppress
from newsletter.settings import Settings
from newsletter.store.db import Base, utcnow
from newsletter.store.models import (
    ConsentRecord,
    Delivery,
    ErasedConsent,
    FeedbackEvent,
    FeedbackKind,
    Issue,
    NewsletterKind,
    Subscriber,
    SubscriberStatus,
    SubscriptionStatus,
    Suppression,
)
from tests.support.readers import (
    Lists,
    add_subscriber,
    confirm_signup,
    csrf_token,
    link_in,
    mails_to,
    path_of,
    signup_for,
    subs_of,
)
from tests.support.services import migrated_postgres_database

READER = "Erase.Me@Example.com"
NAME = "Zebulon Quargleworth"


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest, settings: Settings) -> Iterator[Settings]:
    """conftest's settings on SQLite, or on a fresh migrated PostgreSQL database."""
    if request.param == "sqlite":
        yield settings
        return
    with migrated_postgres_database() as url:
        yield replace(settings, database_url=url)


def confirmed_reader(db: Session, settings: Settings, lists: Lists) -> Subscriber:
    """A reader who signed up with a name and confirmed, with a delivery and a bounce on file."""
    result = subscribe(db, settings, signup_for(READER, lists.daily.id, name=NAME))
    db.commit()
    assert result.consent_id is not None
    confirm_signup(db, settings, result.consent_id)
    subscriber = db.get(Subscriber, result.subscriber_id)
    assert subscriber is not None and subscriber.name == NAME
    # An unconfirmed second signup: never consent, so nothing of it may stay.
    record_consent(db, subscriber, newsletter_slugs=["offers"], version="v", text="t", ip="1.2.3.4")
    issue = Issue(newsletter_id=lists.daily.id, kind=NewsletterKind.DIGEST)
    db.add(issue)
    db.flush()
    db.add(
        Delivery(
            issue_id=issue.id,
            subscriber_id=subscriber.id,
            smtp_response=f"550 5.1.1 <{READER}> mailbox full",
        )
    )
    db.add(
        FeedbackEvent(
            subscriber_id=subscriber.id,
            issue_id=issue.id,
            kind=FeedbackKind.SOFT_BOUNCE,
            detail=f"delay for {READER}",
        )
    )
    db.commit()
    return subscriber


def every_text_cell(db: Session) -> str:
    """Every value of every row of every table, as one string (what a leak would be found in)."""
    db.expire_all()
    cells: list[str] = []
    for table in Base.metadata.sorted_tables:
        for row in db.execute(select(table)):
            cells.extend(str(value) for value in row)
    return "\n".join(cells).casefold()


def test_erase_removes_personal_data_keeps_the_hash_and_a_pseudonymous_consent(
    db: Session, settings: Settings, lists: Lists
) -> None:
    subscriber = confirmed_reader(db, settings, lists)
    sid = subscriber.id
    before = every_text_cell(db)
    assert READER.casefold() in before and NAME.casefold() in before and "203.0.113.9" in before

    result = erase(db, find_reader(db, READER))
    db.commit()

    assert result.consents_kept == 1 and result.consent_records == 2
    assert result.deliveries == 1 and result.feedback_events == 1 and result.subscriptions == 1
    after = every_text_cell(db)
    # No table holds the address (in any case), the name, or the signup's IP and browser.
    for personal in (READER.casefold(), "erase.me", NAME.casefold(), "203.0.113.9", "pytest"):
        assert personal not in after, personal
    for model in (Delivery, FeedbackEvent, ConsentRecord):
        assert db.scalars(select(model).where(model.subscriber_id == sid)).all() == []
    assert db.get(Subscriber, sid) is None

    suppression = db.scalars(select(Suppression)).one()
    assert suppression.email_hash == email_hash(READER) and suppression.reason == "erased"
    (proof,) = erased_consents(db, READER)
    assert proof.email_hash == email_hash(READER)
    assert proof.newsletter_slugs == ["daily"] and proof.consent_text == "I agree."
    assert proof.source == "/" and proof.confirmed_at is not None
    assert {c.name for c in ErasedConsent.__table__.columns}.isdisjoint(
        {"email", "name", "signup_ip", "signup_user_agent", "confirm_ip", "confirm_user_agent"}
    )

    with pytest.raises(ReaderNotFound):
        find_reader(db, READER)


def test_after_erasure_a_signup_is_a_new_double_opt_in(
    db: Session, settings: Settings, lists: Lists
) -> None:
    erase(db, confirmed_reader(db, settings, lists))
    db.commit()

    again = subscribe(db, settings, signup_for(READER, lists.daily.id))
    db.commit()
    assert again.action == SignupAction.CONFIRM and again.consent_id is not None
    reader = db.get(Subscriber, again.subscriber_id)
    assert reader is not None and reader.status == SubscriberStatus.PENDING
    assert reader.name == "" and reader.confirmed_at is None  # nothing came back
    assert {s.status for s in subs_of(db, reader.id).values()} == {SubscriptionStatus.PENDING}
    assert is_suppressed(db, READER)  # no bulk mail until the click

    confirm_signup(db, settings, again.consent_id)
    db.expire_all()
    assert reader.status == SubscriberStatus.ACTIVE
    assert not is_suppressed(db, READER)


def test_a_bounce_or_editor_suppression_still_blocks_signups_after_erasure(
    db: Session, settings: Settings, lists: Lists
) -> None:
    subscriber = confirmed_reader(db, settings, lists)
    suppress(db, subscriber.email, "bounce", "5.1.1")
    result = erase(db, subscriber)
    db.commit()
    assert result.suppression_reason == "bounce"
    assert subscribe(db, settings, signup_for(READER, lists.daily.id)).action == SignupAction.NONE

    other = "other.reader@example.com"
    erase(db, add_subscriber(db, other, SubscriberStatus.ACTIVE, [lists.daily]))
    suppress_reader(db, other)  # the editor's entry replaces the softer one
    db.commit()
    assert (
        db.scalars(
            select(Suppression.reason).where(Suppression.email_hash == email_hash(other))
        ).one()
        == "editor"
    )
    assert subscribe(db, settings, signup_for(other, lists.daily.id)).action == SignupAction.NONE

    # A bounce reported later (e.g. about the confirmation mail) replaces the erasure's entry too.
    third = "third.reader@example.com"
    erase(db, add_subscriber(db, third, SubscriberStatus.ACTIVE, [lists.daily]))
    assert suppress(db, third, "bounce", "5.1.1").reason == "bounce"
    db.commit()
    assert subscribe(db, settings, signup_for(third, lists.daily.id)).action == SignupAction.NONE


def test_a_confirmation_link_from_before_the_erasure_is_dead(
    db: Session, settings: Settings, lists: Lists
) -> None:
    pending = subscribe(db, settings, signup_for(READER, lists.daily.id))
    db.commit()
    assert pending.consent_id is not None
    token = confirm_token_for(settings, db, pending.consent_id)
    assert token
    reader = db.get(Subscriber, pending.subscriber_id)
    assert reader is not None
    erase(db, reader)
    db.commit()
    with pytest.raises(InvalidLink):
        read_confirmation(db, settings, token)


def test_editor_unsubscribe_and_suppress(db: Session, settings: Settings, lists: Lists) -> None:
    reader = add_subscriber(db, READER, SubscriberStatus.ACTIVE, [lists.daily, lists.offers])
    assert unsubscribe_reader(db, reader, "offers") == ["offers"]
    assert reader.status == SubscriberStatus.ACTIVE
    assert unsubscribe_reader(db, reader) == ["daily"]
    assert reader.status == SubscriberStatus.UNSUBSCRIBED

    other = add_subscriber(db, "leave.me@example.com", SubscriberStatus.ACTIVE, [lists.daily])
    row = suppress_reader(db, "leave.me@example.com", "asked by phone")
    db.commit()
    assert row.reason == "editor" and is_suppressed(db, "leave.me@example.com")
    assert {s.status for s in subs_of(db, other.id).values()} == {SubscriptionStatus.UNSUBSCRIBED}
    assert suppress_reader(db, "never.seen@example.com").reason == "editor"


def test_the_consent_proof_is_purged_after_its_retention(
    db: Session, settings: Settings, lists: Lists
) -> None:
    erase(db, confirmed_reader(db, settings, lists))
    db.commit()
    assert purge_pending(db, settings).erased_consents == 0
    later = utcnow() + timedelta(days=settings.erased_consent_days + 1)
    assert purge_pending(db, settings, now=later).erased_consents == 1
    db.commit()
    assert erased_consents(db, READER) == []
    assert is_suppressed(db, READER)  # the hash stays: it is what keeps mail away


# --- the reader's own button, through the pages -----------------------------------------------


@pytest.fixture
def browser(app: Flask, lists: Lists) -> Iterator[FlaskClient]:
    """The reader's browser; tasks (signup, mails) run in-process (eager Celery)."""
    celery = app.extensions["celery"]
    celery.conf.task_always_eager = True
    celery.conf.task_eager_propagates = True
    yield app.test_client()


def sign_up_through_the_form(browser: FlaskClient, lists: Lists) -> None:
    """Post the signup form for READER and the daily list."""
    form = {
        "csrf_token": csrf_token(browser),
        "email": READER,
        "name": NAME,
        "newsletter": [str(lists.daily.id)],
    }
    assert browser.post("/", data=form).status_code in (200, 303)


def reader_status(db: Session) -> tuple[SubscriberStatus, set[SubscriptionStatus]] | None:
    """The reader's status and subscription statuses, freshly read (None: no such reader)."""
    db.expire_all()
    reader = db.scalar(select(Subscriber).where(Subscriber.email_key == READER.casefold()))
    if reader is None:
        return None
    return reader.status, {s.status for s in subs_of(db, reader.id).values()}


def test_the_readers_erase_button_and_a_new_double_opt_in_through_the_pages(
    browser: FlaskClient, settings: Settings, db: Session, lists: Lists
) -> None:
    sign_up_through_the_form(browser, lists)
    assert (
        browser.post(path_of(link_in(mails_to(settings, READER)[-1], "/confirm/"))).status_code
        == 200
    )
    assert reader_status(db) == (SubscriberStatus.ACTIVE, {SubscriptionStatus.ACTIVE})

    preferences = path_of(link_in(mails_to(settings, READER)[-1], "/preferences/"))
    token = csrf_token(browser, preferences)
    browser.post(preferences + "/data", data={"csrf_token": token})
    data_page = path_of(link_in(mails_to(settings, READER)[-1], "/data/"))
    assert "Erase my data" in browser.get(data_page).get_data(as_text=True)
    # A POST without the CSRF token (another site's form) erases nothing.
    assert browser.post(data_page + "/erase").status_code == 400
    assert reader_status(db) is not None
    erased = browser.post(data_page + "/erase", data={"csrf_token": csrf_token(browser, data_page)})
    assert erased.status_code == 200 and "Your data is erased" in erased.get_data(as_text=True)
    assert reader_status(db) is None
    assert NAME.casefold() not in every_text_cell(db)
    assert db.scalars(select(Suppression.reason)).all() == ["erased"]
    assert len(erased_consents(db, READER)) == 1
    # Every link of the old mails is dead now.
    assert browser.get(data_page).status_code == 404
    assert browser.get(preferences).status_code == 404

    mailed = len(mails_to(settings, READER))
    sign_up_through_the_form(browser, lists)
    # A new reader row, pending: not subscribed before the click, and not named from the form.
    assert reader_status(db) == (SubscriberStatus.PENDING, {SubscriptionStatus.PENDING})
    assert len(mails_to(settings, READER)) == mailed + 1
    confirm_mail = mails_to(settings, READER)[-1]
    confirm = path_of(link_in(confirm_mail, "/confirm/"))
    assert browser.get(confirm).status_code == 200  # the page; a GET changes nothing
    assert reader_status(db) == (SubscriberStatus.PENDING, {SubscriptionStatus.PENDING})
    assert browser.post(confirm).status_code == 200
    assert reader_status(db) == (SubscriberStatus.ACTIVE, {SubscriptionStatus.ACTIVE})
    assert not is_suppressed(db, READER)
    assert len(mails_to(settings, READER)) == mailed + 2  # the confirmation, then the welcome
    assert db.execute(text("SELECT count(*) FROM erased_consents")).scalar() == 1
