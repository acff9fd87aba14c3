"""Regressions found in review: odd input that used to end in a 500 or a traceback."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.access.api_tokens import create_token
from newsletter.cli import cli
from newsletter.content.feeds import add_feed, find_feed
from newsletter.issues.schedules import ScheduleError, create_schedule, update_schedule
from newsletter.readers.subscriptions import (
    SubscriptionError,
    UnknownNewsletter,
    resolve_newsletters,
)
from newsletter.settings import Settings, SettingsError
from newsletter.store.db import dispose_engines
from newsletter.store.models import MAX_ID, Newsletter, Schedule, Subscription
from tests.support.readers import Lists, csrf_token, make_lists, row_counts

HUGE = str(MAX_ID + 1)


@pytest.fixture
def lists(db: Session) -> Lists:
    return make_lists(db)


@pytest.fixture
def api(app: Flask, db: Session) -> FlaskClient:
    """A test client with a valid bearer token."""
    _, token = create_token(db, "review")
    db.commit()
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return client


# --- reader pages --------------------------------------------------------------------------------


def test_list_refs_that_only_look_like_numbers_are_unknown_lists(db: Session, lists: Lists) -> None:
    # "²".isdigit() is True but int("²") raises; "٣" is a decimal digit int() reads as 3.
    for ref in ("²", "٣", "\uff11"):  # the last is a fullwidth 1
        with pytest.raises(UnknownNewsletter):
            resolve_newsletters(db, [ref])
    with pytest.raises(SubscriptionError, match="at least one"):
        resolve_newsletters(db, ["", "  "])


@pytest.mark.parametrize("path", ["/", "/embed", "/subscribe"])
@pytest.mark.parametrize("ref", ["²", "٣"])
def test_signup_with_a_digit_like_list_is_a_400(
    client: FlaskClient, db: Session, lists: Lists, path: str, ref: str
) -> None:
    before = row_counts(db)
    data = {"email": "reader@example.com", "newsletter": ref}
    if path == "/":
        data["csrf_token"] = csrf_token(client)
    response = client.post(path, data=data)
    assert response.status_code == 400
    assert "We have no newsletter called" in response.get_data(as_text=True)
    assert row_counts(db) == before


def test_signup_page_with_only_a_blank_list_asks_for_one(
    client: FlaskClient, db: Session, lists: Lists
) -> None:
    before = row_counts(db)
    response = client.post(
        "/",
        data={"email": "reader@example.com", "newsletter": "", "csrf_token": csrf_token(client)},
    )
    assert response.status_code == 400
    assert "Please choose at least one newsletter." in response.get_data(as_text=True)
    assert row_counts(db) == before


def test_a_blank_hidden_list_on_the_news_site_means_its_main_list(
    client: FlaskClient, db: Session, lists: Lists
) -> None:
    response = client.post("/subscribe", data={"email": "reader@example.com", "newsletter": ""})
    assert response.status_code == 200
    slugs = db.scalars(
        select(Newsletter.slug).join(Subscription, Subscription.newsletter_id == Newsletter.id)
    ).all()
    assert slugs == [lists.daily.slug]


# --- JSON API ------------------------------------------------------------------------------------


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
    assert response.get_json()["error"]["status"] == response.status_code


def test_largest_id_is_still_looked_up(api: FlaskClient) -> None:
    response = api.get(f"/api/v1/issues/{MAX_ID}")
    assert response.status_code == 404
    assert f"There is no issue {MAX_ID}" in response.get_json()["error"]["message"]


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"])
def test_send_at_beyond_utc_range_is_a_400(
    api: FlaskClient, db: Session, lists: Lists, when: str
) -> None:
    before = row_counts(db)
    response = api.post("/api/v1/issues", json={"newsletter": "daily", "send_at": when})
    assert response.status_code == 400
    assert response.get_json()["error"]["field"] == "send_at"
    assert row_counts(db) == before


def test_post_published_beyond_utc_range_is_a_400(api: FlaskClient, db: Session) -> None:
    before = row_counts(db)
    post = {
        "guid": "p-1",
        "url": "https://news.example.com/a",
        "title": "Headline",
        "published_at": "0001-01-01T00:00:00+14:00",
    }
    response = api.post("/api/v1/posts", json=post)
    assert response.status_code == 400
    assert response.get_json()["error"]["field"] == "published_at"
    assert row_counts(db) == before


def test_posts_limit_and_key_with_non_ascii_digits(api: FlaskClient) -> None:
    response = api.get("/api/v1/posts?limit=²")
    assert response.status_code == 400
    assert response.get_json()["error"]["field"] == "limit"
    assert api.delete("/api/v1/posts/²").status_code == 404


@pytest.mark.parametrize("field", ["enabled", "reader_local_time", "cron", "name"])
def test_schedule_patch_with_null_is_a_400_and_changes_nothing(
    api: FlaskClient, db: Session, lists: Lists, field: str
) -> None:
    schedule = create_schedule(db, newsletter="daily", cron="0 7 * * *", name="Morning")
    db.commit()
    response = api.patch(f"/api/v1/schedules/{schedule.id}", json={field: None})
    assert response.status_code == 400
    assert field in response.get_json()["error"]["message"]
    db.expire_all()
    row = db.get(Schedule, schedule.id)
    assert row is not None
    assert (row.enabled, row.reader_local_time, row.cron, row.name) == (
        True,
        False,
        "0 7 * * *",
        "Morning",
    )


def test_schedule_frequency_null_still_means_the_default(db: Session, lists: Lists) -> None:
    schedule = create_schedule(db, newsletter="daily", cron="0 7 * * *", frequency="weekly")
    assert update_schedule(db, schedule.id, frequency=None).frequency == "daily"
    with pytest.raises(ScheduleError, match="enabled"):
        update_schedule(db, schedule.id, enabled=None)


def test_find_feed_by_odd_numbers_finds_nothing(db: Session) -> None:
    feed = add_feed(db, "https://news.example.com/feed/")
    assert find_feed(db, str(feed.id)) is feed
    assert find_feed(db, "²") is None
    assert find_feed(db, HUGE) is None


# --- command line --------------------------------------------------------------------------------


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """NEWSLETTER_* for a fresh, migrated SQLite database under tmp_path."""
    for key in list(os.environ):
        if key.startswith("NEWSLETTER_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("NEWSLETTER_ENV", "testing")
    monkeypatch.setenv("NEWSLETTER_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", "review-secret-key-that-is-long-enough-0123")
    monkeypatch.setenv("FLASK_RUN_FROM_CLI", "")
    assert invoke("db", "upgrade").exit_code == 0
    yield
    dispose_engines()


def invoke(*args: str) -> Result:
    """Run the command group in-process; an uncaught exception fails the test."""
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.mark.parametrize(
    "args",
    [
        ("issues", "show", HUGE),
        ("issues", "pause", HUGE),
        ("issues", "show", "0"),
        ("schedules", "delete", HUGE),
        ("tokens", "revoke", HUGE),
    ],
)
def test_cli_ids_out_of_range_are_usage_errors(cli_env: None, args: tuple[str, ...]) -> None:
    result = invoke(*args)
    assert result.exit_code == 2
    assert "is not in the range" in result.output


def test_cli_feeds_remove_huge_id_is_a_message(cli_env: None) -> None:
    result = invoke("feeds", "remove", HUGE)
    assert result.exit_code == 1
    assert "no feed" in result.output


def test_cli_send_at_out_of_range_is_a_message(cli_env: None) -> None:
    result = invoke("issues", "send", "1", "--at", "0001-01-01T00:00:00+14:00")
    assert result.exit_code == 1
    assert "is out of range" in result.output


def test_cli_db_upgrade_to_an_unknown_revision_is_a_message(cli_env: None) -> None:
    result = invoke("db", "upgrade", "--revision", "nope")
    assert result.exit_code == 1
    assert "Can't locate revision identified by 'nope'" in result.output


def test_cli_newsletter_name_with_a_line_break_is_refused(cli_env: None) -> None:
    result = invoke("newsletters", "create", "daily", "--name", "Daily\r\nBcc: x@example.com")
    assert result.exit_code == 1
    assert "one line" in result.output
    assert invoke("newsletters", "list").output.startswith("No newsletters")


# --- settings ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("BATCH_SIZE", "abc", "NEWSLETTER_BATCH_SIZE: expected a whole number, got 'abc'"),
        ("SMTP_TIMEOUT", "nan", "NEWSLETTER_SMTP_TIMEOUT: expected a number"),
        ("DATABASE_URL", "bogus", "NEWSLETTER_DATABASE_URL is not a database URL"),
        ("REDIS_URL", "localhost:6379", "NEWSLETTER_REDIS_URL must start with redis://"),
        ("SMTP_URL", "smtp://relay:abc", "NEWSLETTER_SMTP_URL has a port"),
        ("BASE_URL", "newsletter.example.com", "NEWSLETTER_BASE_URL must be an http"),
        ("SIGNUP_RATE_LIMIT", "lots", "NEWSLETTER_SIGNUP_RATE_LIMIT must be limits"),
        ("ADDRESS_RATE_LIMIT", "5 an hour", "NEWSLETTER_ADDRESS_RATE_LIMIT must be limits"),
        ("MAIL_FROM", "newsletter", "NEWSLETTER_MAIL_FROM must be an address"),
    ],
)
def test_malformed_settings_are_refused_in_one_clear_line(
    tmp_path: Path, variable: str, value: str, message: str
) -> None:
    environ = {"NEWSLETTER_DATA_DIR": str(tmp_path), f"NEWSLETTER_{variable}": value}
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(environ)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_the_readme_examples_of_settings_are_accepted(tmp_path: Path) -> None:
    environ = {
        "NEWSLETTER_DATA_DIR": str(tmp_path),
        "NEWSLETTER_DATABASE_URL": "postgresql+psycopg://newsletter:pw@db/newsletter",
        "NEWSLETTER_REDIS_URL": "redis://redis:6379/1",
        "NEWSLETTER_SMTP_URL": "smtp://user:pass@smtp.example.com:587?starttls=true",
        "NEWSLETTER_BASE_URL": "https://newsletter.example.com",
        "NEWSLETTER_MAIL_FROM": "The Daily Brief <news@example.com>",
        "NEWSLETTER_SIGNUP_RATE_LIMIT": "20/minute;200/hour",
    }
    settings = Settings.from_env(environ)
    assert settings.redis_url == "redis://redis:6379/1"
