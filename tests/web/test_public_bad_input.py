"""Bad input on the reader pages: a clear 4xx, the form shown again, the database unchanged."""

from __future__ import annotations

import re
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
        ("not-an-address", "Please include an @, like jane@example.com."),
        ("a@@example.com", "Please check the part after the @, like example.com."),
        ("ann@example..com", "Please check the dots: an address never has two in a row."),
        ("ann@localhost", "Please check the part after the @: it needs a dot, like example.com."),
        ("ann example@example.com", "Please take out the spaces: an email address has none."),
        ("<ann@example.com>", "Please type just the address, like jane@example.com."),
        ("@example.com", "Please add the part before the @, like jane@."),
        ("ann@", "Please add the part after the @, like example.com."),
        ("a" * 250 + "@example.com", "That email address is too long."),
        ("ann@" + "x" * 64 + ".example.com", "The part after the @ is too long."),
    ],
)
def test_invalid_addresses_are_400_with_one_message_of_our_own_beside_the_field(
    eager_client: FlaskClient, db: Session, settings: Settings, address: str, message: str
) -> None:
    data = valid_form(eager_client)
    data["email"] = address
    before = row_counts(db)
    html = assert_refused(eager_client.post("/", data=data), db, before, settings)
    error = re.search(r'<p class="field-error" id="email-error">([^<]+)</p>', html)
    assert error is not None and error.group(1).endswith(message)
    assert html.count(message) == 1, "shown once, beside the field"
    assert "@-sign" not in html, "never in email-validator's words"
    assert 'aria-invalid="true"' in html and 'aria-describedby="email-error"' in html
    # The summary above the form links to the field instead of repeating the message.
    status = re.search(r'<div class="form-status".*?</div>', html, re.S)
    assert status is not None
    assert "<strong>Please check the form:</strong>" in status.group(0)
    assert '<a href="#email">Email address</a>' in status.group(0)


def test_every_error_is_shown_once_and_the_summary_links_to_each_field(
    client: FlaskClient, db: Session, settings: Settings, lists: Lists
) -> None:
    data = {"csrf_token": csrf_token(client), "email": "ann@", "name": "N" * 201, "newsletter": "x"}
    before = row_counts(db)
    html = assert_refused(client.post("/", data=data), db, before, settings)
    for message in (
        "Please add the part after the @, like example.com.",
        "Please keep your name under 200 characters.",
        "We have no newsletter called",
    ):
        assert html.count(message) == 1, message
    status = re.search(r'<div class="form-status".*?</div>', html, re.S)
    assert status is not None
    links = re.findall(r'<a href="#([^"]+)">([^<]+)</a>', status.group(0))
    assert links == [
        ("email", "Email address"),
        ("name", "Your name"),
        (f"newsletter-{lists.daily.id}", "Newsletters"),
    ]
    assert f'id="newsletter-{lists.daily.id}"' in html


def test_an_error_without_a_field_of_its_own_is_said_in_the_summary(
    client: FlaskClient, db: Session, settings: Settings, lists: Lists
) -> None:
    # The embed has no name field and a one-list form no checkboxes: their errors go on top.
    data = {"email": "a@example.com", "name": "N" * 201, "newsletter": "daily\r\n"}
    response = client.post("/embed?newsletter=daily", data=data)
    html = assert_refused(response, db, row_counts(db), settings)
    status = re.search(r'<div class="form-status".*?</div>', html, re.S)
    assert status is not None
    assert "Please keep your name under 200 characters." in status.group(0)


@pytest.mark.parametrize("endpoint", ["/", "/embed"])
def test_a_likely_slip_in_the_domain_is_offered_beside_the_field(
    client: FlaskClient, db: Session, settings: Settings, lists: Lists, endpoint: str
) -> None:
    data = {"email": "jane@gmailcom", "newsletter": "daily"}
    if endpoint == "/":
        data["csrf_token"] = csrf_token(client)
    html = assert_refused(client.post(endpoint, data=data), db, row_counts(db), settings)
    hint = (
        '<p class="field-hint" id="email-suggestion" data-suggestion="jane@gmail.com">'
        'Did you mean <strong class="field-hint__address">jane@gmail.com</strong>?</p>'
    )
    assert hint in html
    assert 'aria-describedby="email-error email-suggestion"' in html
    # The script that turns it into a button comes only with a suggestion; no inline script.
    assert '<script src="/static/signup-suggestion.js" defer></script>' in html
    assert "signup-suggestion.js" not in client.get(endpoint).get_data(as_text=True)
    assert not re.search(r"<script>|\son[a-z]+=", html)
    script = client.get("/static/signup-suggestion.js")
    assert script.status_code == 200 and b"email-suggestion" in script.get_data()
    script.close()


def test_a_suggestion_is_only_a_hint_a_valid_address_is_accepted_as_typed(
    eager_client: FlaskClient, db: Session, settings: Settings
) -> None:
    data = valid_form(eager_client)
    # Sent back for another reason, the form offers the correction but finds no fault with it.
    html = eager_client.post("/", data={**data, "email": "jane@gmial.com", "name": "N" * 201})
    page = html.get_data(as_text=True)
    assert "Did you mean" in page and 'id="email-error"' not in page
    assert 'aria-describedby="email-suggestion"' in page
    response = eager_client.post("/", data={**data, "email": "jane@gmial.com"})
    assert response.status_code == 303
    assert [m["To"] for m in mails(settings)] == ["jane@gmial.com"]


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
