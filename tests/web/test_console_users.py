"""The admin's users page: add an account (its one-time password shown once), change a role,
disable and enable, require two-factor login; refusals say why and change nothing."""

from __future__ import annotations

import re

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from newsletter.access.console_sessions import live_sessions, start_session
from newsletter.access.logins import Outcome, check_password
from newsletter.access.roles import Role
from newsletter.access.users import find_user
from newsletter.settings import Settings
from newsletter.store.models import User
from newsletter.web.console.guard import COOKIE
from tests.support.console import form_token, make_user
from tests.support.readers import row_counts


@pytest.fixture
def admin(db: Session) -> User:
    return make_user(db, "admin@example.com", Role.ADMIN)


@pytest.fixture
def browser(app: Flask, db: Session, settings: Settings, admin: User) -> FlaskClient:
    _row, token = start_session(db, settings, admin)
    db.commit()
    client = app.test_client()
    client.set_cookie(COOKIE, token, path="/console")
    return client


def test_adding_an_account_shows_its_one_time_password_once(
    browser: FlaskClient, db: Session, settings: Settings
) -> None:
    token = form_token(browser, "/console/users")
    response = browser.post(
        "/console/users",
        data={"csrf_token": token, "email": "New@Example.com", "name": "Nia", "role": "editor"},
    )
    html = response.get_data(as_text=True)
    assert response.status_code == 200 and response.headers["Cache-Control"] == "no-store"
    found = re.search(r'one-time password is <code class="secret">([^<]+)</code>', html)
    assert found
    user = find_user(db, "new@example.com")
    assert user is not None and user.role is Role.EDITOR and user.must_change_password
    assert check_password(db, settings, "new@example.com", found.group(1)).outcome is Outcome.OK
    assert found.group(1) not in browser.get("/console/users").get_data(as_text=True)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"email": "admin@EXAMPLE.com", "role": "viewer"}, "There is already an account"),
        ({"email": "not-an-address", "role": "viewer"}, "is not an email address"),
        ({"email": "x@example.com", "role": "owner"}, "Please correct the form"),
        ({"email": "", "role": "viewer"}, "Please correct the form"),
    ],
)
def test_a_refused_account_says_why_and_stores_nothing(
    browser: FlaskClient, db: Session, data: dict[str, str], message: str
) -> None:
    before = row_counts(db)
    token = form_token(browser, "/console/users")
    response = browser.post("/console/users", data={"csrf_token": token, **data})
    assert response.status_code == 400 and message in response.get_data(as_text=True)
    assert row_counts(db) == before


def test_role_disable_enable_and_two_factor(
    browser: FlaskClient, db: Session, settings: Settings
) -> None:
    ed = make_user(db, "ed@example.com", Role.EDITOR)
    start_session(db, settings, ed)
    db.commit()
    token = form_token(browser, "/console/users")
    moved = browser.post(
        f"/console/users/{ed.id}/role", data={"csrf_token": token, "role": "viewer"}
    )
    assert moved.status_code == 302
    assert "ed@example.com is now a viewer." in browser.get("/console/users").get_data(as_text=True)
    browser.post(f"/console/users/{ed.id}/disable", data={"csrf_token": token})
    db.refresh(ed)
    assert ed.role is Role.VIEWER and ed.disabled_at is not None
    assert live_sessions(db, settings, ed.id) == []
    browser.post(f"/console/users/{ed.id}/enable", data={"csrf_token": token})
    browser.post(f"/console/users/{ed.id}/require-totp", data={"csrf_token": token})
    db.refresh(ed)
    assert ed.disabled_at is None and ed.totp_required


def test_the_last_admin_cannot_demote_or_disable_themselves(
    browser: FlaskClient, db: Session, admin: User
) -> None:
    token = form_token(browser, "/console/users")
    demote = browser.post(
        f"/console/users/{admin.id}/role", data={"csrf_token": token, "role": "viewer"}
    )
    assert demote.status_code == 409 and "only enabled admin" in demote.get_data(as_text=True)
    disable = browser.post(f"/console/users/{admin.id}/disable", data={"csrf_token": token})
    assert disable.status_code == 409
    db.refresh(admin)
    assert admin.role is Role.ADMIN and admin.disabled_at is None


def test_an_unknown_account_is_a_404(browser: FlaskClient) -> None:
    token = form_token(browser, "/console/users")
    assert browser.post("/console/users/999/disable", data={"csrf_token": token}).status_code == 404
