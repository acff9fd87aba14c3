"""The dispatch JSON API: issues, transitions (409 when illegal), test sends, schedules, preview.

The API enqueues on Celery; here its queue is the in-process ``InlineQueue`` so a test can run
the send it started (tests/integration/test_dispatch.py covers the real broker and workers).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsletter.access.api_tokens import create_token
from newsletter.issues.schedules import create_schedule
from newsletter.mail.transport import close_transports
from newsletter.settings import Settings
from newsletter.store.db import utcnow
from newsletter.store.models import MAX_ID, Issue, NewsletterKind, Schedule
from tests.support import dispatching as seed
from tests.support.readers import row_counts
from tests.support.smtp import SMTPSink

HUGE = str(MAX_ID + 1)  # one past the largest id an id column holds
# What an editor's console needs (tests/web/test_api.py checks each route's scope on its own).
DISPATCH_SCOPES = [
    "issues:read",
    "issues:write",
    "issues:send",
    "schedules:read",
    "schedules:write",
]


@pytest.fixture
def settings(settings: Settings, smtp_sink: SMTPSink) -> Settings:
    """conftest's settings delivering to the sink."""
    return replace(settings, smtp_url=smtp_sink.url, batch_size=2)


@pytest.fixture
def app(app: Flask, settings: Settings) -> Iterator[Flask]:
    """conftest's app, its API enqueuing on an inline queue (exposed as app.config['QUEUE'])."""
    inline = seed.InlineQueue(settings)
    app.extensions["newsletter.task_queue"] = inline
    app.config["QUEUE"] = inline
    yield app
    close_transports()


@pytest.fixture
def api(app: Flask, db: Session) -> FlaskClient:
    """A test client that sends a valid bearer token."""
    _, token = create_token(db, "tests", DISPATCH_SCOPES)
    db.commit()
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return client


def drain(app: Flask) -> None:
    """Run what the API enqueued."""
    with app.app_context():
        app.config["QUEUE"].drain()


@pytest.fixture
def lists(db: Session) -> dict[str, Any]:
    """A digest with posts and readers, and a campaign list."""
    daily = seed.newsletter(db, "daily")
    offers = seed.newsletter(db, "offers", kind=NewsletterKind.CAMPAIGN)
    seed.posts(db, 3)
    for i in range(3):
        seed.reader(db, f"r{i}@example.com", [daily, offers])
    return {"daily": daily, "offers": offers}


def error(response: Any) -> str:
    """The detail of a problem body."""
    assert response.is_json, response.get_data(as_text=True)
    return str(response.get_json()["detail"])


def test_every_route_needs_a_token(app: Flask) -> None:
    client = app.test_client()
    for method, path in [
        ("get", "/api/v1/issues"),
        ("post", "/api/v1/issues"),
        ("get", "/api/v1/issues/1"),
        ("post", "/api/v1/issues/1/send"),
        ("post", "/api/v1/issues/1/pause"),
        ("get", "/api/v1/schedules"),
        ("delete", "/api/v1/schedules/1"),
        ("get", "/api/v1/newsletters/daily/preview"),
    ]:
        response = getattr(client, method)(path)
        assert response.status_code == 401, path
        assert "bearer token" in error(response)


def test_digest_created_sent_and_followed_through_the_api(
    api: FlaskClient, app: Flask, lists: dict[str, Any], smtp_sink: SMTPSink
) -> None:
    created = api.post("/api/v1/issues", json={"newsletter": "daily"})
    assert created.status_code == 201
    issue = created.get_json()["issue"]
    assert issue["status"] == "draft" and issue["kind"] == "digest"
    assert issue["frequency"] == "daily" and len(issue["post_ids"]) == 3 and issue["subject"]

    sent = api.post(f"/api/v1/issues/{issue['id']}/send")
    assert sent.status_code == 202
    assert sent.get_json()["issue"]["status"] == "sending"
    drain(app)
    shown = api.get(f"/api/v1/issues/{issue['id']}").get_json()
    assert shown["issue"]["status"] == "sent"
    assert shown["progress"]["sent"] == 3 and shown["progress"]["done"] is True
    assert len(smtp_sink.messages) == 3

    again = api.post(f"/api/v1/issues/{issue['id']}/resume")
    assert again.status_code == 409
    assert (
        error(again) == f"Issue {issue['id']} is sent; only paused or failed issues can be resumed."
    )
    listed = api.get("/api/v1/issues?newsletter=daily&status=sent").get_json()["items"]
    assert [i["id"] for i in listed] == [issue["id"]]


def test_campaign_pause_resume_cancel_and_errors(
    api: FlaskClient, app: Flask, lists: dict[str, Any], db: Session, smtp_sink: SMTPSink
) -> None:
    bad = api.post("/api/v1/issues", json={"newsletter": "offers", "html": "<p>x</p>"})
    assert bad.status_code == 400 and error(bad) == "'subject' is required"
    assert api.post("/api/v1/issues", json={"newsletter": "nope"}).status_code == 404
    assert api.post("/api/v1/issues", data="not json").status_code == 415
    broken = api.post("/api/v1/issues", data="{not json", content_type="application/json")
    assert broken.status_code == 400 and "Invalid JSON" in error(broken)
    wrong = api.post("/api/v1/issues", json={"newsletter": "offers", "kind": "digest"})
    assert wrong.status_code == 400 and "campaign newsletter" in error(wrong)
    assert db.scalar(select(func.count()).select_from(Issue)) == 0  # nothing half-stored

    created = api.post(
        "/api/v1/issues",
        json={"newsletter": "offers", "subject": "Sale", "html": "<p>Everything must go</p>"},
    )
    assert created.status_code == 201
    issue_id = created.get_json()["issue"]["id"]
    edited = api.patch(f"/api/v1/issues/{issue_id}", json={"subject": "Big sale"})
    assert edited.get_json()["issue"]["subject"] == "Big sale"

    assert api.post(f"/api/v1/issues/{issue_id}/pause").status_code == 409
    assert api.post(f"/api/v1/issues/{issue_id}/send").status_code == 202
    assert api.post(f"/api/v1/issues/{issue_id}/pause").get_json()["issue"]["status"] == "paused"
    drain(app)
    assert smtp_sink.messages == []  # paused before any batch ran
    resumed = api.post(f"/api/v1/issues/{issue_id}/resume")
    assert resumed.status_code == 202
    drain(app)
    assert len(smtp_sink.messages) == 3
    assert {m.message["Subject"] for m in smtp_sink.messages} == {"Big sale"}
    cancel = api.post(f"/api/v1/issues/{issue_id}/cancel")
    assert cancel.status_code == 409 and "is sent" in error(cancel)
    assert api.post("/api/v1/issues/999/cancel").status_code == 404


def test_header_injection_in_subject_or_preheader_is_refused(
    api: FlaskClient, lists: dict[str, Any], db: Session
) -> None:
    for field, value in [
        ("subject", "Sale\r\nBcc: everyone@example.com"),
        ("subject", "Sale\x00"),
        ("preheader", "Line one\nline two"),
    ]:
        body = {"newsletter": "offers", "subject": "Sale", "html": "<p>x</p>", field: value}
        refused = api.post("/api/v1/issues", json=body)
        assert refused.status_code == 400, field
        assert "one line without control characters" in error(refused)
    assert db.scalar(select(func.count()).select_from(Issue)) == 0  # nothing half-stored

    created = api.post(
        "/api/v1/issues", json={"newsletter": "offers", "subject": "Sale", "html": "<p>x</p>"}
    )
    issue_id = created.get_json()["issue"]["id"]
    edited = api.patch(f"/api/v1/issues/{issue_id}", json={"subject": "Sale\rX-Evil: 1"})
    assert edited.status_code == 400
    db.expire_all()
    assert db.get(Issue, issue_id).subject == "Sale"  # type: ignore[union-attr]


def test_schedule_for_later_then_cancel(
    api: FlaskClient, lists: dict[str, Any], app: Flask
) -> None:
    later = (utcnow() + timedelta(hours=2)).isoformat()
    created = api.post(
        "/api/v1/issues",
        json={"newsletter": "offers", "subject": "Soon", "text": "Plain words", "send_at": later},
    )
    assert created.status_code == 201
    issue = created.get_json()["issue"]
    assert issue["status"] == "scheduled" and issue["send_at"]
    held = api.post(f"/api/v1/issues/{issue['id']}/hold").get_json()["issue"]
    assert held["held"] is True
    naive = api.post(f"/api/v1/issues/{issue['id']}/send", json={"send_at": "2030-01-01T08:00"})
    assert naive.status_code == 400 and "timezone" in error(naive)
    assert naive.get_json()["errors"][0]["loc"] == ["body", "send_at"]
    cancelled = api.post(f"/api/v1/issues/{issue['id']}/cancel").get_json()["issue"]
    assert cancelled["status"] == "cancelled"
    drain(app)


def test_resend_failed_and_test_send(
    api: FlaskClient, app: Flask, lists: dict[str, Any], smtp_sink: SMTPSink
) -> None:
    smtp_sink.handler.reply_for["r1@example.com"] = "550 5.1.1 gone"
    issue_id = api.post("/api/v1/issues", json={"newsletter": "daily"}).get_json()["issue"]["id"]
    api.post(f"/api/v1/issues/{issue_id}/send")
    drain(app)
    progress = api.get(f"/api/v1/issues/{issue_id}").get_json()["progress"]
    assert (progress["sent"], progress["failed"]) == (2, 1)
    resent = api.post(f"/api/v1/issues/{issue_id}/resend-failed")
    assert resent.status_code == 200
    assert resent.get_json()["requeued"] == 0 and resent.get_json()["not_mailable"] == 1

    tested = api.post(f"/api/v1/issues/{issue_id}/test", json={"to": ["editor@example.com"]})
    assert tested.status_code == 200
    assert tested.get_json()["results"][0]["ok"] is True
    assert smtp_sink.messages[-1].message["Subject"].startswith("[TEST] ")
    bad = api.post(f"/api/v1/issues/{issue_id}/test", json={"to": "nope"})
    assert bad.status_code == 400
    assert api.post(f"/api/v1/issues/{issue_id}/test", json={"to": 5}).status_code == 400


def test_schedules_crud(api: FlaskClient, lists: dict[str, Any], db: Session) -> None:
    created = api.post(
        "/api/v1/schedules",
        json={
            "newsletter": "daily",
            "cron": "0 8 * * *",
            "timezone": "Europe/Paris",
            "prepare_minutes": 60,
            "name": "Morning",
        },
    )
    assert created.status_code == 201, created.get_json()
    schedule = created.get_json()["schedule"]
    assert schedule["timezone"] == "Europe/Paris" and len(schedule["next_runs"]) == 3
    sid = schedule["id"]

    bad = api.post("/api/v1/schedules", json={"newsletter": "daily", "cron": "every day"})
    assert bad.status_code == 400 and "cron" in error(bad)
    assert api.patch(f"/api/v1/schedules/{sid}", json={"colour": "red"}).status_code == 400
    assert api.patch(f"/api/v1/schedules/{sid}", json={"enabled": "yes"}).status_code == 400
    assert api.patch(f"/api/v1/schedules/{sid}", json={"timezone": "Nowhere"}).status_code == 400
    patched = api.patch(
        f"/api/v1/schedules/{sid}", json={"enabled": False, "reader_local_time": True}
    )
    assert patched.status_code == 200
    assert patched.get_json()["schedule"]["enabled"] is False
    assert patched.get_json()["schedule"]["next_runs"] == []
    listed = api.get("/api/v1/schedules").get_json()["items"]
    assert [s["id"] for s in listed] == [sid]
    assert api.delete(f"/api/v1/schedules/{sid}").status_code == 204
    assert api.delete(f"/api/v1/schedules/{sid}").status_code == 404
    assert db.scalar(select(func.count()).select_from(Schedule)) == 0


def test_preview(api: FlaskClient, lists: dict[str, Any], db: Session) -> None:
    response = api.get("/api/v1/newsletters/daily/preview")
    assert response.status_code == 200
    body = response.get_json()
    assert body["subject"] and "Story 2" in body["text"] and "<html" in body["html"].lower()
    assert body["url"].startswith("http://127.0.0.1:5000/preview/")
    assert db.scalar(select(func.count()).select_from(Issue)) == 0  # a preview stores nothing
    assert api.get("/api/v1/newsletters/nope/preview").status_code == 404
    bad = api.get("/api/v1/newsletters/daily/preview?frequency=hourly")
    assert bad.status_code == 400 and "'daily' or 'weekly'" in error(bad)
    assert bad.get_json()["field"] == "frequency"
    drafts = api.get("/api/v1/newsletters/offers/preview")
    assert drafts.status_code == 404 and "no draft" in error(drafts)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"/api/v1/issues/{HUGE}"),
        ("PATCH", f"/api/v1/issues/{HUGE}"),
        ("POST", f"/api/v1/issues/{HUGE}/pause"),
        ("POST", f"/api/v1/issues/{HUGE}/send"),
        ("PATCH", f"/api/v1/schedules/{HUGE}"),
        ("DELETE", f"/api/v1/schedules/{HUGE}"),
    ],
)
def test_ids_beyond_the_id_column_are_json_404s(api: FlaskClient, method: str, path: str) -> None:
    response = api.open(path, method=method, json={})
    # Werkzeug answers 405 when an out-of-range id fails the converter of the only rule with
    # that method (another method's rule had the path): either way a JSON 4xx, never a 500.
    assert response.status_code in (404, 405)
    assert response.get_json()["status"] == response.status_code


def test_largest_id_is_still_looked_up(api: FlaskClient) -> None:
    response = api.get(f"/api/v1/issues/{MAX_ID}")
    assert response.status_code == 404
    assert f"There is no issue {MAX_ID}" in response.get_json()["detail"]


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
def test_send_at_beyond_utc_range_is_a_400(
    api: FlaskClient, db: Session, lists: dict[str, Any], when: str
) -> None:
    before = row_counts(db)
    response = api.post("/api/v1/issues", json={"newsletter": "daily", "send_at": when})
    assert response.status_code == 400
    assert response.get_json()["field"] == "send_at"
    assert row_counts(db) == before


@pytest.mark.parametrize("field", ["enabled", "reader_local_time", "cron", "name"])
def test_schedule_patch_with_null_is_a_400_and_changes_nothing(
    api: FlaskClient, db: Session, lists: dict[str, Any], field: str
) -> None:
    schedule = create_schedule(db, newsletter="daily", cron="0 7 * * *", name="Morning")
    db.commit()
    response = api.patch(f"/api/v1/schedules/{schedule.id}", json={field: None})
    assert response.status_code == 400
    assert field in response.get_json()["detail"]
    db.expire_all()
    row = db.get(Schedule, schedule.id)
    assert row is not None
    assert (row.enabled, row.reader_local_time, row.cron, row.name) == (
        True,
        False,
        "0 7 * * *",
        "Morning",
    )


def test_a_send_the_deliverability_guard_paused_says_why(
    api: FlaskClient, app: Flask, lists: dict[str, Any], smtp_sink: SMTPSink
) -> None:
    inline = app.config["QUEUE"]
    inline.settings = replace(inline.settings, guard_bounce_rate=0.3, guard_min_sample=3)
    smtp_sink.handler.reply_for["r1@example.com"] = "550 5.1.1 gone"
    issue_id = api.post("/api/v1/issues", json={"newsletter": "daily"}).get_json()["issue"]["id"]
    api.post(f"/api/v1/issues/{issue_id}/send")
    drain(app)
    shown = api.get(f"/api/v1/issues/{issue_id}").get_json()
    assert shown["issue"]["status"] == "paused"
    assert shown["issue"]["reason"] == shown["progress"]["reason"]
    assert shown["progress"]["reason"].startswith(
        "auto-paused: 1 of the first 2 mails hard-bounced: more than the 30% limit "
        "(NEWSLETTER_GUARD_BOUNCE_RATE) allows in the first 3"
    )
    assert (shown["progress"]["sent"], shown["progress"]["failed"]) == (1, 1)
