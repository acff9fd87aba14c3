"""Bad input on the reader pages: a clear 4xx, the form shown again, the database unchanged."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from newsletter.settings import Settings
from tests.support.readers import Lists, csrf_token, mails, make_lists, row_counts

BREAKS = ["\r\n", "\n", "\r", "\x00", "\t", "\x7f", "\x85", "\u2028"]


@pytest.fixture
def lists(db: Session) -> Lists:
    return make_lists(db)


@pytest.fixture
def eager_client(app: Flask, lists: Lists) -> FlaskClient:
    celery = app.extensions["celery"]
    celery.conf.task_always_eager = True
    celery.conf.task_eager_propagates = True
    return app.test_client()


def valid_form(client: FlaskClient) -> dict[str, Any]:
    return {
        "csrf_token": csrf_token(client),
        "email": "ok@example.com",
        "name": "Ann",
        "newsletter": ["daily"],
        "source": "/",
        "next": "https://news.example.com/",
    }


def assert_refused(
    response: Any, db: Session, before: dict[str, int], settings: Settings, status: int = 400
) -> str:
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    assert row_counts(db) == before
    assert mails(settings) == []
    return str(response.get_data(as_text=True))


def test_a_valid_form_is_accepted(eager_client: FlaskClient, settings: Settings) -> None:
    # The baseline the refusals below are measured against.
    response = eager_client.post("/", data=valid_form(eager_client))
    assert response.status_code == 303
    assert len(mails(settings)) == 1


@pytest.mark.parametrize("field", ["email", "name", "newsletter", "source", "next", "embed"])
@pytest.mark.parametrize("brk", BREAKS)
def test_control_characters_in_any_signup_field_are_400(
    eager_client: FlaskClient, db: Session, settings: Settings, field: str, brk: str
) -> None:
    data = valid_form(eager_client)
    original = data.get(field, "1")
    value = original[0] if isinstance(original, list) else original
    data[field] = f"{value}{brk}Bcc: victim@example.com"
    before = row_counts(db)
    html = assert_refused(eager_client.post("/", data=data), db, before, settings)
    assert "line breaks or other control characters" in html
    assert 'name="email"' in html  # the form is shown again


@pytest.mark.parametrize("endpoint", ["/subscribe", "/embed"])
def test_control_characters_on_cross_site_endpoints_are_400(
    eager_client: FlaskClient, db: Session, settings: Settings, endpoint: str
) -> None:
    before = row_counts(db)
    for data in (
        {"email": "a@example.com\r\nBcc: b@example.com", "newsletter": "daily"},
        {
            "email": "a@example.com",
            "newsletter": "daily",
            "next": "https://news.example.com/\r\nX: y",
        },
        {"email": "a@example.com", "newsletter": "daily", "source": "x\ny"},
        {"email": "a@example.com", "newsletter": "daily\r\n"},
    ):
        assert_refused(eager_client.post(endpoint, data=data), db, before, settings)


@pytest.mark.parametrize(
    "path",
    ["/?newsletter=daily%0d%0aX:y", "/embed?newsletter=%0a", "/?source=%00", "/?x=%e2%80%a8"],
)
def test_control_characters_in_query_are_400(client: FlaskClient, lists: Lists, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 400
    assert "control characters" in response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("", "Please enter your email address."),
        ("   ", "Please enter your email address."),
        ("not-an-address", "not valid"),
        ("a@@example.com", "not valid"),
        ("ann@example..com", "not valid"),
        ("ann@localhost", "not valid"),
        ("ann example@example.com", "not valid"),
        ("<ann@example.com>", "not valid"),
        ("a" * 250 + "@example.com", "too long"),
        ("ann@" + "x" * 64 + ".example.com", "not valid"),
    ],
)
def test_invalid_addresses_are_400_with_a_field_message(
    eager_client: FlaskClient, db: Session, settings: Settings, address: str, message: str
) -> None:
    data = valid_form(eager_client)
    data["email"] = address
    before = row_counts(db)
    html = assert_refused(eager_client.post("/", data=data), db, before, settings)
    assert 'id="email-error"' in html and message in html
    assert 'aria-invalid="true"' in html


@pytest.mark.parametrize("lists_sent", [["nope"], ["staff"], ["99999"], ["daily", "nope"]])
def test_unknown_or_private_lists_are_400(
    eager_client: FlaskClient, db: Session, settings: Settings, lists_sent: list[str]
) -> None:
    data = valid_form(eager_client)
    data["newsletter"] = lists_sent
    before = row_counts(db)
    html = assert_refused(eager_client.post("/", data=data), db, before, settings)
    assert 'id="newsletter-error"' in html


def test_unknown_list_on_cross_site_post_is_400(
    eager_client: FlaskClient, db: Session, settings: Settings
) -> None:
    before = row_counts(db)
    response = eager_client.post("/subscribe", data={"email": "a@example.com", "newsletter": "x"})
    html = assert_refused(response, db, before, settings)
    assert "We have no newsletter called" in html


def test_overlong_name_is_400(eager_client: FlaskClient, db: Session, settings: Settings) -> None:
    data = valid_form(eager_client)
    data["name"] = "N" * 201
    before = row_counts(db)
    html = assert_refused(eager_client.post("/", data=data), db, before, settings)
    assert "Please keep your name under 200 characters." in html


@pytest.mark.parametrize("endpoint", ["/", "/subscribe", "/embed"])
def test_oversized_body_is_413(
    eager_client: FlaskClient, db: Session, settings: Settings, endpoint: str
) -> None:
    data = valid_form(eager_client)
    data["name"] = "x" * (settings.max_body_bytes + 10)
    before = row_counts(db)
    html = assert_refused(eager_client.post(endpoint, data=data), db, before, settings, 413)
    assert "larger than this service accepts" in html


def test_oversized_multipart_body_is_413(
    eager_client: FlaskClient, db: Session, settings: Settings
) -> None:
    data = valid_form(eager_client)
    data["name"] = "x" * (settings.max_body_bytes + 10)
    before = row_counts(db)
    response = eager_client.post("/subscribe", data=data, content_type="multipart/form-data")
    assert_refused(response, db, before, settings, 413)


def test_filled_honeypot_is_silent_success_even_with_bad_fields(
    eager_client: FlaskClient, db: Session, settings: Settings
) -> None:
    before = row_counts(db)
    response = eager_client.post(
        "/subscribe",
        data={"email": "not an address", "newsletter": "nope", "website": "http://spam"},
    )
    assert response.status_code == 303 and response.headers["Location"] == "/check-inbox"
    assert row_counts(db) == before and mails(settings) == []


@pytest.mark.parametrize("method", ["put", "delete", "patch"])
def test_other_methods_are_405(client: FlaskClient, lists: Lists, method: str) -> None:
    response = getattr(client, method)("/subscribe")
    assert response.status_code == 405


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


def test_an_empty_form_reports_every_problem_at_once(
    client: FlaskClient, db: Session, settings: Settings, lists: Lists
) -> None:
    before = row_counts(db)
    data = {
        "csrf_token": csrf_token(client),
        "email": "",
        "name": "N" * 201,
        "newsletter": ["nope"],
    }
    html = assert_refused(client.post("/", data=data), db, before, settings)
    for field in ("email", "name", "newsletter"):
        assert f'id="{field}-error"' in html, field
    assert "Please enter your email address." in html
    assert "Please keep your name under 200 characters." in html
    assert "We have no newsletter called &#39;nope&#39;" in html


def test_a_bad_address_and_a_bad_list_are_reported_together_on_the_embed(
    client: FlaskClient, db: Session, settings: Settings, lists: Lists
) -> None:
    before = row_counts(db)
    response = client.post("/embed", data={"email": "ann@", "newsletter": "nope", "embed": "1"})
    html = assert_refused(response, db, before, settings)
    assert 'id="email-error"' in html and 'id="newsletter-error"' in html
