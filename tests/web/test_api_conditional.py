"""Requests that could race or be retried: ``ETag``/``If-Match`` on PATCH of issues and
schedules (412 when the row changed since it was read), ``Idempotency-Key`` on creating and
sending an issue (a retry answers the first success again and does nothing twice)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsletter import create_app
from newsletter.access.api_tokens import SCOPES, create_token
from newsletter.mail.transport import close_transports
from newsletter.settings import Settings
from newsletter.store.db import dispose_engines, get_sessionmaker
from newsletter.store.models import IdempotencyKey, Issue, NewsletterKind
from tests.support import dispatching as seed
from tests.support.services import migrated_postgres_database

CAMPAIGN = {"newsletter": "offers", "subject": "Half price", "text": "This weekend only."}


@pytest.fixture
def api(app: Flask, settings: Settings, db: Session) -> Iterator[FlaskClient]:
    """A client with a token of every scope, over a campaign list with a reader, enqueuing
    in process."""
    app.extensions["newsletter.task_queue"] = seed.InlineQueue(settings)
    offers = seed.newsletter(db, "offers", kind=NewsletterKind.CAMPAIGN)
    seed.newsletter(db, "daily")
    seed.reader(db, "r@example.com", [offers])
    _, token = create_token(db, "tests", SCOPES)
    db.commit()
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    yield client
    close_transports()


def issues(db: Session) -> int:
    """How many issues there are."""
    return int(db.scalar(select(func.count()).select_from(Issue)) or 0)


def created(api: FlaskClient) -> tuple[int, str]:
    """A new campaign draft: its id and ETag."""
    response = api.post("/api/v1/issues", json=CAMPAIGN)
    assert response.status_code == 201
    return response.get_json()["issue"]["id"], response.headers["ETag"]


# --- ETag / If-Match --------------------------------------------------------------------------


def test_an_issue_edit_with_a_stale_etag_is_a_412(api: FlaskClient) -> None:
    issue_id, tag = created(api)
    shown = api.get(f"/api/v1/issues/{issue_id}")
    assert shown.headers["ETag"] == tag and tag.startswith('"')
    first = api.patch(
        f"/api/v1/issues/{issue_id}", json={"subject": "A"}, headers={"If-Match": tag}
    )
    assert first.status_code == 200
    new_tag = first.headers["ETag"]
    assert new_tag != tag
    # A second editor still holding the old tag is refused, and told the current one.
    stale = api.patch(
        f"/api/v1/issues/{issue_id}", json={"subject": "B"}, headers={"If-Match": tag}
    )
    assert stale.status_code == 412 and stale.mimetype == "application/problem+json"
    assert stale.get_json()["etag"] == new_tag
    assert api.get(f"/api/v1/issues/{issue_id}").get_json()["issue"]["subject"] == "A"
    # The current tag, any tag (*) or none at all: the edit applies.
    for headers in ({"If-Match": new_tag}, {"If-Match": "*"}, {}):
        assert (
            api.patch(
                f"/api/v1/issues/{issue_id}", json={"subject": "C"}, headers=headers
            ).status_code
            == 200
        )
    # A weak tag never matches (If-Match compares strongly).
    weak = {"If-Match": "W/" + api.get(f"/api/v1/issues/{issue_id}").headers["ETag"]}
    assert (
        api.patch(f"/api/v1/issues/{issue_id}", json={"subject": "D"}, headers=weak).status_code
        == 412
    )


def test_a_schedule_edit_with_a_stale_etag_is_a_412(api: FlaskClient) -> None:
    made = api.post("/api/v1/schedules", json={"newsletter": "daily", "cron": "0 7 * * *"})
    assert made.status_code == 201
    schedule_id, tag = made.get_json()["schedule"]["id"], made.headers["ETag"]
    assert api.get(f"/api/v1/schedules/{schedule_id}").headers["ETag"] == tag
    path = f"/api/v1/schedules/{schedule_id}"
    changed = api.patch(path, json={"cron": "0 8 * * *"}, headers={"If-Match": tag})
    assert changed.status_code == 200 and changed.headers["ETag"] != tag
    stale = api.patch(path, json={"enabled": False}, headers={"If-Match": tag})
    assert stale.status_code == 412
    shown = api.get(path).get_json()["schedule"]
    assert shown["cron"] == "0 8 * * *" and shown["enabled"] is True
    assert api.get("/api/v1/schedules/999").status_code == 404


# --- Idempotency-Key ----------------------------------------------------------------------------


def test_a_retried_create_answers_the_first_and_creates_one(api: FlaskClient, db: Session) -> None:
    key = {"Idempotency-Key": "create-1"}
    first = api.post("/api/v1/issues", json=CAMPAIGN, headers=key)
    assert first.status_code == 201 and "Idempotent-Replayed" not in first.headers
    again = api.post("/api/v1/issues", json=CAMPAIGN, headers=key)
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json() == first.get_json()
    assert again.headers["ETag"] == first.headers["ETag"]
    assert issues(db) == 1
    other = api.post("/api/v1/issues", json={**CAMPAIGN, "subject": "Other"}, headers=key)
    assert other.status_code == 422 and other.get_json()["field"] == "Idempotency-Key"
    assert issues(db) == 1
    # Another key is another request.
    assert (
        api.post(
            "/api/v1/issues", json=CAMPAIGN, headers={"Idempotency-Key": "create-2"}
        ).status_code
        == 201
    )
    assert issues(db) == 2


def test_a_retried_send_sends_once(api: FlaskClient, db: Session) -> None:
    issue_id, _ = created(api)
    key = {"Idempotency-Key": "send-1"}
    first = api.post(f"/api/v1/issues/{issue_id}/send", headers=key)
    assert first.status_code == 202
    again = api.post(f"/api/v1/issues/{issue_id}/send", headers=key)
    # Without the key this would be a 409 (it is already sending); with it, the first answer.
    assert again.status_code == 202 and again.get_json() == first.get_json()
    assert api.post(f"/api/v1/issues/{issue_id}/send").status_code == 409
    # The same key on another issue is another request.
    other_id, _ = created(api)
    assert api.post(f"/api/v1/issues/{other_id}/send", headers=key).status_code == 422


def test_a_refused_request_keeps_no_key(api: FlaskClient, db: Session) -> None:
    key = {"Idempotency-Key": "fix-and-retry"}
    refused = api.post("/api/v1/issues", json={"newsletter": "offers"}, headers=key)
    assert refused.status_code == 400  # a campaign needs a subject
    assert db.scalar(select(func.count()).select_from(IdempotencyKey)) == 0
    # Corrected, the same key goes through (it was not kept for the refusal).
    fixed = api.post("/api/v1/issues", json=CAMPAIGN, headers=key)
    assert fixed.status_code == 201


@pytest.mark.parametrize("bad", ["", " ", "x" * 256, "caf\u00e9"])
def test_a_malformed_key_is_a_400(api: FlaskClient, db: Session, bad: Any) -> None:
    headers = {"Idempotency-Key": bad.encode("utf-8").decode("latin-1")}
    response = api.post("/api/v1/issues", json=CAMPAIGN, headers=headers)
    assert response.status_code == 400 and response.get_json()["field"] == "Idempotency-Key"
    assert issues(db) == 0


def test_keys_belong_to_their_token(api: FlaskClient, app: Flask, db: Session) -> None:
    key = {"Idempotency-Key": "shared"}
    assert api.post("/api/v1/issues", json=CAMPAIGN, headers=key).status_code == 201
    _, token = create_token(db, "another client", ["issues:write"])
    db.commit()
    other = app.test_client()
    response = other.post(
        "/api/v1/issues", json=CAMPAIGN, headers={**key, "Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 201 and "Idempotent-Replayed" not in response.headers
    assert issues(db) == 2


# --- Races, on PostgreSQL ----------------------------------------------------------------------


@pytest.fixture
def pg_api(settings: Settings) -> Iterator[tuple[Flask, str, Session]]:
    """The app on a fresh PostgreSQL database, a campaign list and a token of every scope."""
    with migrated_postgres_database() as url:
        pg = replace(settings, database_url=url)
        app = create_app(pg)
        app.extensions["newsletter.task_queue"] = seed.InlineQueue(pg)
        db = get_sessionmaker(url)()
        seed.newsletter(db, "offers", kind=NewsletterKind.CAMPAIGN)
        _, token = create_token(db, "tests", SCOPES)
        db.commit()
        yield app, token, db
        db.close()
        close_transports()
        dispose_engines()


def test_concurrent_retries_with_one_key_create_one_issue(
    pg_api: tuple[Flask, str, Session],
) -> None:
    app, token, db = pg_api
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": "same-click"}
    barrier = threading.Barrier(4)
    statuses: list[int] = []

    def post() -> None:
        client = app.test_client()
        barrier.wait()
        statuses.append(client.post("/api/v1/issues", json=CAMPAIGN, headers=headers).status_code)

    threads = [threading.Thread(target=post) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # One ran; the others were told it runs (409) or got its answer (201): never a second issue.
    assert statuses.count(201) >= 1 and set(statuses) <= {201, 409}, statuses
    assert issues(db) == 1
    assert (
        app.test_client().post("/api/v1/issues", json=CAMPAIGN, headers=headers).status_code == 201
    )
    assert issues(db) == 1


def test_concurrent_edits_with_one_etag_apply_once(pg_api: tuple[Flask, str, Session]) -> None:
    app, token, _ = pg_api
    auth = {"Authorization": f"Bearer {token}"}
    made = app.test_client().post("/api/v1/issues", json=CAMPAIGN, headers=auth)
    issue_id, tag = made.get_json()["issue"]["id"], made.headers["ETag"]
    barrier = threading.Barrier(4)
    statuses: list[int] = []

    def edit(n: int) -> None:
        client = app.test_client()
        barrier.wait()
        response = client.patch(
            f"/api/v1/issues/{issue_id}",
            json={"subject": f"Edit {n}"},
            headers={**auth, "If-Match": tag},
        )
        statuses.append(response.status_code)

    threads = [threading.Thread(target=edit, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # The row lock serialises them: the first applies, the others see its change and get 412.
    assert sorted(statuses) == [200, 412, 412, 412], statuses
