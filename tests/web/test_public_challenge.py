"""The proof of work on the signup forms (NEWSLETTER_SIGNUP_CHALLENGE): off by default; when on,
every signup endpoint needs a solved, fresh, unused challenge, and says so inline when not."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

from newsletter import create_app
from newsletter.readers.signup_challenge import MISSING, REPLAYED
from newsletter.settings import Settings
from newsletter.store.db import dispose_engines
from tests.support.challenge import challenge_of, solution, solve_page
from tests.support.readers import Lists, csrf_token, mails, mails_to, make_lists, row_counts


@pytest.fixture
def lists(db: Session) -> Lists:
    return make_lists(db)


@pytest.fixture
def challenged(settings: Settings, lists: Lists) -> Iterator[FlaskClient]:
    """A client of an app with the challenge on (easy, for speed) and tasks run in-process."""
    app: Flask = create_app(
        replace(settings, signup_challenge=True, signup_challenge_max_number=300)
    )
    celery = app.extensions["celery"]
    celery.conf.task_always_eager = True
    celery.conf.task_eager_propagates = True
    yield app.test_client()
    dispose_engines()


def form_of(client: FlaskClient, page: str, address: str) -> dict[str, Any]:
    """What a browser posts from ``page`` once its script solved the challenge."""
    html = client.get(page).get_data(as_text=True)
    data: dict[str, Any] = {"email": address, "newsletter": "daily", "altcha": solve_page(html)}
    token = re.search(r'name="csrf_token" value="([^"]+)"', html)
    if token:
        data["csrf_token"] = token.group(1)
    return data


ENDPOINTS = {"/": "/", "/embed": "/embed", "/subscribe": "/embed"}  # endpoint -> page with form


def test_the_challenge_is_off_by_default(client: FlaskClient, lists: Lists) -> None:
    html = client.get("/").get_data(as_text=True)
    assert "data-challenge" not in html and "signup-challenge.js" not in html
    assert 'name="altcha"' not in html


@pytest.mark.parametrize("page", ["/", "/embed"])
def test_pages_carry_a_challenge_their_own_script_solves(
    challenged: FlaskClient, page: str
) -> None:
    response = challenged.get(page)
    html = response.get_data(as_text=True)
    challenge = challenge_of(html)
    assert challenge["algorithm"] == "SHA-256" and challenge["maxNumber"] == 300
    assert '<input type="hidden" name="altcha" value="">' in html
    assert '<script src="/static/signup-challenge.js" defer></script>' in html
    assert re.search(r"<noscript>.*needs JavaScript.*</noscript>", html)
    # No inline script, no event handler attributes, and the policy stays strict.
    assert len(re.findall(r"<script", html)) == 1
    assert not re.search(r"\son[a-z]+=", html)
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self';" in csp and "unsafe" not in csp
    if page == "/embed":
        assert "Set-Cookie" not in response.headers  # the challenge needs no cookie
    script = challenged.get("/static/signup-challenge.js")
    assert script.status_code == 200 and b"crypto.subtle.digest" in script.get_data()
    script.close()
    # A fresh challenge for every page.
    assert challenge_of(challenged.get(page).get_data(as_text=True)) != challenge


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_solved_challenge_lets_the_signup_through(
    challenged: FlaskClient, settings: Settings, endpoint: str
) -> None:
    address = f"solved{len(endpoint)}@example.com"
    response = challenged.post(endpoint, data=form_of(challenged, ENDPOINTS[endpoint], address))
    assert response.status_code == 303, response.get_data(as_text=True)[:400]
    assert response.headers["Location"].endswith("/check-inbox")
    assert len(mails_to(settings, address)) == 1


def refused(response: TestResponse, db: Session, before: dict[str, int], message: str) -> str:
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    status = re.search(r'<div class="form-status".*?</div>', html, re.S)
    assert status and message in status.group(0), html[:1500]
    assert 'name="email"' in html and challenge_of(html)  # the form again, with a new challenge
    assert row_counts(db) == before
    return html


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_missing_solution_is_a_form_error(
    challenged: FlaskClient, db: Session, settings: Settings, endpoint: str
) -> None:
    data = form_of(challenged, ENDPOINTS[endpoint], "nojs@example.com")
    del data["altcha"]
    before = row_counts(db)
    refused(challenged.post(endpoint, data=data), db, before, MISSING)
    assert mails(settings) == []


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_a_solution_is_good_for_one_signup(
    challenged: FlaskClient, db: Session, settings: Settings, endpoint: str
) -> None:
    data = form_of(challenged, ENDPOINTS[endpoint], "once@example.com")
    assert challenged.post(endpoint, data=data).status_code == 303
    before = row_counts(db)
    refused(challenged.post(endpoint, data=data), db, before, REPLAYED)
    assert len(mails(settings)) == 1


def test_a_wrong_or_forged_solution_is_a_form_error_never_a_500(
    challenged: FlaskClient, db: Session
) -> None:
    html = challenged.get("/").get_data(as_text=True)
    challenge = challenge_of(html)
    token = csrf_token(challenged)
    before = row_counts(db)
    for bad in (
        solution(challenge, -1),
        solution({**challenge, "signature": "0" * 64}, 1),
        "%%%",
        "e30=",  # {}
    ):
        data = {"csrf_token": token, "email": "bad@example.com", "newsletter": "daily"}
        response = challenged.post("/", data={**data, "altcha": bad})
        refused(response, db, before, "Please press Subscribe again")


def test_the_honeypot_still_answers_like_success(challenged: FlaskClient, db: Session) -> None:
    before = row_counts(db)
    data = {"email": "bot@example.com", "newsletter": "daily", "website": "http://spam"}
    response = challenged.post("/subscribe", data=data)
    assert response.status_code == 303 and response.headers["Location"] == "/check-inbox"
    assert row_counts(db) == before


def test_a_missing_solution_is_reported_with_the_other_problems(
    challenged: FlaskClient, db: Session
) -> None:
    data = form_of(challenged, "/", "")
    del data["altcha"]
    before = row_counts(db)
    html = refused(challenged.post("/", data=data), db, before, MISSING)
    assert 'id="email-error"' in html
