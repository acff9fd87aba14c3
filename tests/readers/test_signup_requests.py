"""A signup as a queued request: its task form, and the worker's half that records it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any

from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter import create_app
from newsletter.readers.signup import SignupAction
from newsletter.readers.signup_requests import (
    process_signup,
    read_signup_request,
    signup_request,
)
from newsletter.readers.suppression import suppress
from newsletter.settings import Settings
from newsletter.store.db import dispose_engines, utcnow
from newsletter.store.models import ConsentRecord, Newsletter, Subscriber, SubscriberStatus
from tests.support.readers import Lists, add_subscriber, mails, signup_for


class Recorder:
    """A MailQueue that records the mails it is asked for."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def process_signup(self, signup: Any) -> None:
        self.calls.append(("process_signup", signup))

    def send_confirmation(self, consent_id: int) -> None:
        self.calls.append(("send_confirmation", consent_id))

    def send_already_subscribed(self, subscriber_id: int) -> None:
        self.calls.append(("send_already_subscribed", subscriber_id))

    def send_welcome(self, subscriber_id: int, newsletter_ids: Sequence[int]) -> None:
        self.calls.append(("send_welcome", subscriber_id))


def test_a_signup_request_is_json_and_reads_back_as_it_was() -> None:
    signup = signup_for("Ann@example.com", 3, 1, name="Ann")
    now = utcnow() - timedelta(minutes=5)
    data = signup_request(signup, now)
    assert json.loads(json.dumps(data)) == data
    assert read_signup_request(json.loads(json.dumps(data))) == (signup, now)


def test_the_worker_records_the_signup_then_queues_its_mail(
    db: Session, settings: Settings, lists: Lists
) -> None:
    queue = Recorder()
    then = utcnow() - timedelta(minutes=3)
    data = signup_request(signup_for("new@example.com", lists.daily.id, name="Nia"), then)
    result = process_signup(db, settings, queue, data)
    assert result.action == SignupAction.CONFIRM
    assert queue.calls == [("send_confirmation", result.consent_id)]
    db.expire_all()  # committed before the mail was queued
    record = db.get(ConsentRecord, result.consent_id)
    assert record is not None and record.signup_ip == "203.0.113.9"
    subscriber = db.get(Subscriber, result.subscriber_id)
    assert subscriber is not None and subscriber.created_at == then


def test_only_the_worker_tells_the_states_apart(
    db: Session, settings: Settings, lists: Lists
) -> None:
    add_subscriber(db, "confirmed@example.com", SubscriberStatus.ACTIVE, [lists.daily])
    add_subscriber(db, "bounced@example.com", SubscriberStatus.BOUNCED, [lists.daily])
    suppress(db, "never@example.com", "manual")
    db.commit()
    seen = {}
    for address in ("confirmed@example.com", "bounced@example.com", "never@example.com"):
        queue = Recorder()
        data = signup_request(signup_for(address, lists.daily.id), utcnow())
        seen[address] = (process_signup(db, settings, queue, data).action, queue.calls)
    assert seen["confirmed@example.com"][0] == SignupAction.ALREADY_SUBSCRIBED
    assert [c for c, _ in seen["confirmed@example.com"][1]] == ["send_already_subscribed"]
    assert seen["bounced@example.com"] == (SignupAction.NONE, [])
    assert seen["never@example.com"] == (SignupAction.NONE, [])


def test_a_signup_for_a_list_deleted_meanwhile_is_dropped(
    db: Session, settings: Settings, lists: Lists
) -> None:
    data = signup_request(signup_for("late@example.com", lists.offers.id), utcnow())
    db.delete(db.get(Newsletter, lists.offers.id))
    db.commit()
    queue = Recorder()
    assert process_signup(db, settings, queue, data).action == SignupAction.NONE
    assert queue.calls == []
    assert db.scalar(select(Subscriber)) is None


def test_the_task_runs_it_and_the_daily_cap_is_per_inbox(settings: Settings, lists: Lists) -> None:
    app: Flask = create_app(replace(settings, signup_mails_per_day=2))
    celery = app.extensions["celery"]
    celery.conf.task_always_eager = True
    celery.conf.task_eager_propagates = True
    try:
        for address in ("A.B.c+x@googlemail.com", "abc@gmail.com", "a.b.c@gmail.com"):
            data = signup_request(signup_for(address, lists.daily.id), utcnow())
            with app.app_context():
                app.extensions["newsletter.mail_queue"].process_signup(data)
    finally:
        dispose_engines()
    # Three readers, one Gmail inbox: two mails.
    assert len(mails(settings)) == 2
