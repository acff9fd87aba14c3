"""No enumeration: the signup answer, and the work the request does, are identical for every
state; only the worker looks at the address, and only the mails differ."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

from newsletter.readers.suppression import suppress
from newsletter.settings import Settings
from newsletter.store.db import get_engine
from newsletter.store.models import SubscriberStatus, Subscription, SubscriptionStatus
from tests.support.readers import (
    Lists,
    add_subscriber,
    csrf_token,
    link_in,
    mails,
    mails_to,
    make_lists,
    row_counts,
    text_part,
)

# Headers that depend on the clock or on how many requests this client made, never on the address.
# Headers that differ per request whoever asks: the clock, the limiter's counters, and the
# request id every answer carries (random, so it tells nothing about the address).
VOLATILE = {"Date", "X-RateLimit-Remaining", "X-RateLimit-Reset", "Retry-After", "X-Request-ID"}


@pytest.fixture
def lists(db: Session) -> Lists:
    return make_lists(db)


@pytest.fixture
def states(db: Session, lists: Lists) -> dict[str, str]:
    """One address per state a reader can be in."""
    add_subscriber(db, "pending@example.com", SubscriberStatus.PENDING, [lists.daily])
    add_subscriber(db, "confirmed@example.com", SubscriberStatus.ACTIVE, [lists.daily])
    add_subscriber(db, "partial@example.com", SubscriberStatus.ACTIVE, [lists.weekly])
    add_subscriber(db, "left@example.com", SubscriberStatus.UNSUBSCRIBED, [lists.daily])
    add_subscriber(db, "bounced@example.com", SubscriberStatus.BOUNCED, [lists.daily])
    add_subscriber(db, "complained@example.com", SubscriberStatus.ACTIVE, [lists.daily])
    suppress(db, "complained@example.com", "complaint")
    suppress(db, "never@example.com", "manual", "asked never to be mailed")
    db.commit()
    return {
        "new": "new@example.com",
        "pending": "pending@example.com",
        "confirmed": "confirmed@example.com",
        "confirmed, new list": "partial@example.com",
        "unsubscribed": "left@example.com",
        "bounced": "bounced@example.com",
        "suppressed subscriber": "complained@example.com",
        "suppressed, never subscribed": "never@example.com",
    }


@pytest.fixture
def eager_client(app: Flask, lists: Lists) -> FlaskClient:
    celery = app.extensions["celery"]
    celery.conf.task_always_eager = True
    celery.conf.task_eager_propagates = True
    return app.test_client()


def fingerprint(response: TestResponse) -> tuple[int, bytes, list[tuple[str, str]]]:
    headers = sorted((k, v) for k, v in response.headers.items() if k not in VOLATILE)
    return response.status_code, response.get_data(), headers


def post_each(
    states: dict[str, str], send: Callable[[str], TestResponse]
) -> dict[str, tuple[int, bytes, list[tuple[str, str]]]]:
    return {state: fingerprint(send(address)) for state, address in states.items()}


def test_signup_page_answer_is_identical_for_every_state(
    eager_client: FlaskClient, states: dict[str, str]
) -> None:
    token = csrf_token(eager_client)

    def send(address: str) -> TestResponse:
        data = {"csrf_token": token, "email": address, "newsletter": "daily"}
        return eager_client.post("/", data=data)

    seen = post_each(states, send)
    assert len(set(map(repr, seen.values()))) == 1, seen.keys()
    status, _, headers = next(iter(seen.values()))
    assert status == 303 and dict(headers)["Location"] == "/check-inbox"
    assert "Set-Cookie" not in dict(headers)
    # Where it leads is one page, which knows nothing of the address.
    assert b"Check your inbox" in eager_client.get("/check-inbox").get_data()


@pytest.mark.parametrize("endpoint", ["/subscribe", "/embed"])
def test_cross_site_answers_are_identical_for_every_state(
    eager_client: FlaskClient, states: dict[str, str], endpoint: str
) -> None:
    def send(address: str) -> TestResponse:
        data: dict[str, Any] = {"email": address, "newsletter": "daily"}
        if endpoint == "/subscribe":
            data["next"] = "https://news.example.com/world"
        return eager_client.post(endpoint, data=data)

    seen = post_each(states, send)
    assert len(set(map(repr, seen.values()))) == 1
    status, _, headers = next(iter(seen.values()))
    if endpoint == "/subscribe":
        assert status == 303
        assert dict(headers)["Location"] == "https://news.example.com/world?subscribed=1"
    else:
        assert status == 303
        assert dict(headers)["Location"] == "/embed/check-inbox"


def test_each_state_gets_the_right_mail(
    eager_client: FlaskClient, settings: Settings, states: dict[str, str]
) -> None:
    token = csrf_token(eager_client)
    for address in states.values():
        eager_client.post(
            "/",
            data={"csrf_token": token, "email": address, "newsletter": ["daily", "weekend"]},
        )

    def only(address: str) -> str:
        found = mails_to(settings, address)
        assert len(found) == 1, (address, len(found))
        return str(found[0]["Subject"])

    confirm_subject = "Please confirm your subscription to The Daily Brief"
    assert only("new@example.com") == confirm_subject
    assert only("pending@example.com") == confirm_subject
    assert only("left@example.com") == confirm_subject  # leaving means opting in again
    # Asked for daily + weekend while on weekend: a confirmation for daily only.
    assert only("partial@example.com") == confirm_subject
    partial = text_part(mails_to(settings, "partial@example.com")[0])
    assert "Morning Briefing" in partial and "Weekend Reads" not in partial
    # Suppressed and bounced addresses get nothing at all.
    for address in ("bounced@example.com", "complained@example.com", "never@example.com"):
        assert mails_to(settings, address) == []
    # Confirmed on daily only, asked for daily + weekend: confirm weekend.
    assert only("confirmed@example.com") == confirm_subject


def test_confirmed_reader_gets_already_subscribed_note(
    eager_client: FlaskClient, settings: Settings, db: Session, states: dict[str, str]
) -> None:
    token = csrf_token(eager_client)
    eager_client.post(
        "/", data={"csrf_token": token, "email": "CONFIRMED@example.com", "newsletter": "daily"}
    )
    [note] = mails(settings)
    assert note["Subject"] == "You are already subscribed to The Daily Brief"
    assert "/confirm/" not in note.as_string()
    assert "/preferences/" in link_in(note, "/preferences/")
    assert note["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # Nothing about the reader changed.
    db.expire_all()
    from sqlalchemy import select

    statuses = {s.status for s in db.scalars(select(Subscription))}
    assert SubscriptionStatus.ACTIVE in statuses


def test_rate_limit_headers_do_not_depend_on_state(
    eager_client: FlaskClient, states: dict[str, str]
) -> None:
    # The per-IP counter moves with every request; its limit header is the same for all.
    token = csrf_token(eager_client)
    limits = {
        eager_client.post(
            "/", data={"csrf_token": token, "email": address, "newsletter": "daily"}
        ).headers.get("X-RateLimit-Limit")
        for address in states.values()
    }
    assert len(limits) == 1


class RecordingQueue:
    """A MailQueue that only records what the web asked for."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def process_signup(self, signup: Mapping[str, Any]) -> None:
        self.calls.append(("process_signup", dict(signup)))

    def send_confirmation(self, consent_id: int) -> None:
        self.calls.append(("send_confirmation", consent_id))

    def send_already_subscribed(self, subscriber_id: int) -> None:
        self.calls.append(("send_already_subscribed", subscriber_id))

    def send_welcome(self, subscriber_id: int, newsletter_ids: Sequence[int]) -> None:
        self.calls.append(("send_welcome", (subscriber_id, list(newsletter_ids))))


@pytest.fixture
def statements(settings: Settings) -> Iterator[list[tuple[str, Any]]]:
    """Every SQL statement the app runs from now on, with its parameters."""
    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        seen.append((statement, params))

    engine = get_engine(settings.database_url)
    event.listen(engine, "before_cursor_execute", record)
    yield seen
    event.remove(engine, "before_cursor_execute", record)


def _anonymised(value: Any, address: str) -> Any:
    """``value`` with the address (in any case) replaced by a placeholder, recursively."""
    if isinstance(value, str):
        return "<address>" if value.casefold() == address.casefold() else value
    if isinstance(value, Mapping):
        return {k: _anonymised(v, address) for k, v in value.items() if k != "now"}
    if isinstance(value, list | tuple):
        return [_anonymised(v, address) for v in value]
    return value


@pytest.mark.parametrize("endpoint", ["/", "/embed", "/subscribe"])
def test_the_signup_request_does_the_same_work_for_every_state(
    app: Flask,
    db: Session,
    states: dict[str, str],
    statements: list[tuple[str, Any]],
    endpoint: str,
) -> None:
    queue = RecordingQueue()
    app.extensions["newsletter.mail_queue"] = queue
    client = app.test_client()
    token = csrf_token(client)
    chosen = {
        "new",
        "confirmed",
        "bounced",
        "suppressed subscriber",
        "suppressed, never subscribed",
    }
    work = {}
    for state in sorted(chosen):
        address = states[state]
        before = row_counts(db)
        statements.clear()
        queue.calls.clear()
        data = {"email": address, "newsletter": "daily", "csrf_token": token}
        response = client.post(endpoint, data=data)
        assert response.status_code == 303, response.get_data(as_text=True)[:300]
        assert [name for name, _ in queue.calls] == ["process_signup"], state
        work[state] = (
            [(sql, _anonymised(params, address)) for sql, params in statements],
            _anonymised(queue.calls, address),
        )
        assert row_counts(db) == before, f"the request for {state!r} changed the database"
    assert len({repr(w) for w in work.values()}) == 1, "the work differs between states"
    sql, calls = work["new"]
    assert sql, "the lists are resolved with a query"
    assert all(s.lstrip().upper().startswith("SELECT") for s, _ in sql), sql
    assert all("subscriber" not in s.lower() and "suppression" not in s.lower() for s, _ in sql)
    [(_, signup)] = calls
    assert signup["email"] == "<address>" and signup["newsletter_ids"]
