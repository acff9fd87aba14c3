"""Console login: cookie flags, a new session id at every login, logout and expiry on the server,
lockout shared by every web process, the per-IP limit, one-time passwords and TOTP."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter import create_app
from newsletter.access.console_sessions import revoke_all
from newsletter.access.roles import Role
from newsletter.access.totp import begin_enrolment, confirm_enrolment
from newsletter.access.users import create_user
from newsletter.settings import Settings
from newsletter.store.db import dispose_engines, utcnow
from newsletter.store.models import ConsoleSession, User
from newsletter.web.console.guard import COOKIE
from tests.conftest import TEST_SECRET
from tests.support.console import PASSWORD, form_token, login, make_user, session_cookie
from tests.support.totp import code_at

EMAIL = "ann@example.com"


@pytest.fixture
def ann(db: Session) -> User:
    return make_user(db, EMAIL, Role.EDITOR)


def console_cookie_header(response: object) -> str:
    headers = [h for h in response.headers.getlist("Set-Cookie") if h.startswith(f"{COOKIE}=")]  # type: ignore[attr-defined]
    assert len(headers) == 1, headers
    return headers[0]


def test_without_a_session_a_page_redirects_to_the_login_with_the_way_back(
    client: FlaskClient,
) -> None:
    response = client.get("/console/sessions")
    assert response.status_code == 302
    assert response.headers["Location"] == "/console/login?next=/console/sessions"


def test_login_sets_a_strict_httponly_cookie_for_the_console_only(
    client: FlaskClient, ann: User
) -> None:
    response = login(client, EMAIL)
    assert response.status_code == 302 and response.headers["Location"] == "/console/"
    header = console_cookie_header(response)
    assert "HttpOnly" in header and "SameSite=Strict" in header and "Path=/console" in header
    assert "Secure" not in header  # http://127.0.0.1 in testing: a Secure cookie would be lost
    page = client.get("/console/")
    assert page.status_code == 200 and "Dashboard" in page.get_data(as_text=True)
    assert page.headers["Cache-Control"] == "no-store"
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]


def test_in_production_the_cookies_are_secure(tmp_path: Path, db: Session) -> None:
    production = Settings(
        env="production",
        data_dir=tmp_path,
        secret_key=TEST_SECRET,
        base_url="https://newsletter.example.com",
    ).with_defaults()
    app = create_app(production)
    make_user(db, EMAIL, Role.EDITOR)
    client = app.test_client()
    response = login(client, EMAIL)
    header = console_cookie_header(response)
    assert "Secure" in header and "HttpOnly" in header and "SameSite=Strict" in header
    assert app.config["SESSION_COOKIE_SECURE"] and app.config["SESSION_COOKIE_HTTPONLY"]
    dispose_engines()


def test_every_login_gets_a_new_id_and_the_old_one_is_dead(
    client: FlaskClient, ann: User, db: Session
) -> None:
    # A session id planted in the browser (session fixation) is never what the login hands out.
    client.set_cookie(COOKIE, "planted-by-someone-else", path="/console")
    login(client, EMAIL)
    first = session_cookie(client)
    assert first and first != "planted-by-someone-else"
    login(client, EMAIL)  # logging in again in the same browser
    second = session_cookie(client)
    assert second and second != first
    client.set_cookie(COOKIE, first, path="/console")
    assert client.get("/console/").status_code == 302  # the first id was revoked
    client.set_cookie(COOKIE, second, path="/console")
    assert client.get("/console/").status_code == 200


def test_the_csrf_token_changes_at_login(client: FlaskClient, ann: User) -> None:
    before = form_token(client)
    login(client, EMAIL)
    after = form_token(client, "/console/sessions")
    assert after != before


def test_logout_ends_the_session_on_the_server(client: FlaskClient, ann: User, db: Session) -> None:
    login(client, EMAIL)
    token = session_cookie(client)
    assert token
    csrf = form_token(client, "/console/")
    response = client.post("/console/logout", data={"csrf_token": csrf})
    assert response.status_code == 302 and response.headers["Location"] == "/console/login"
    assert session_cookie(client) is None
    client.set_cookie(COOKIE, token, path="/console")  # replaying the old cookie
    assert client.get("/console/").status_code == 302
    assert db.scalars(select(ConsoleSession.revoked_at)).one() is not None


def test_logout_is_post_only(client: FlaskClient) -> None:
    assert client.get("/console/logout").status_code == 405


def test_an_idle_an_expired_or_a_revoked_session_is_refused(
    client: FlaskClient, ann: User, db: Session, settings: Settings
) -> None:
    login(client, EMAIL)
    row = db.scalars(select(ConsoleSession)).one()
    row.last_seen_at = utcnow() - timedelta(hours=settings.console_session_idle_hours, minutes=1)
    db.commit()
    assert client.get("/console/").status_code == 302

    login(client, EMAIL)
    row = db.scalars(select(ConsoleSession).order_by(ConsoleSession.id.desc())).first()
    assert row is not None
    row.expires_at = utcnow() - timedelta(seconds=1)
    db.commit()
    assert client.get("/console/").status_code == 302

    login(client, EMAIL)
    assert client.get("/console/").status_code == 200
    revoke_all(db, ann.id)  # as `newsletter users revoke-sessions` does
    db.commit()
    assert client.get("/console/").status_code == 302


def test_a_wrong_password_and_an_unknown_address_get_the_same_answer(
    client: FlaskClient, ann: User
) -> None:
    wrong = login(client, EMAIL, "not the password")
    unknown = login(client, "nobody@example.com", "not the password")
    assert wrong.status_code == unknown.status_code == 400
    message = "do not match an account, or the account is locked"
    assert message in wrong.get_data(as_text=True) and message in unknown.get_data(as_text=True)
    assert session_cookie(client) is None


@pytest.fixture
def two_apps(settings: Settings) -> Iterator[tuple[Flask, Flask]]:
    yield create_app(settings), create_app(settings)
    dispose_engines()


def test_the_lockout_holds_across_web_processes(
    two_apps: tuple[Flask, Flask], ann: User, db: Session
) -> None:
    first, second = (app.test_client() for app in two_apps)
    for client in (first, second, first, second):
        assert login(client, EMAIL, "wrong").status_code == 400
    db.refresh(ann)
    assert ann.failed_logins == 4 and ann.locked_until is None
    assert login(second, EMAIL, "wrong").status_code == 400  # the fifth, on the other process
    db.refresh(ann)
    assert ann.locked_until is not None
    refused = login(first, EMAIL)  # the right password, now locked
    assert refused.status_code == 400 and session_cookie(first) is None


def test_login_posts_are_limited_per_ip(settings: Settings, ann: User) -> None:
    app = create_app(replace(settings, console_login_rate_limit="3/minute"))
    client = app.test_client()
    statuses = [login(client, f"x{n}@example.com", "wrong").status_code for n in range(4)]
    assert statuses == [400, 400, 400, 429]
    assert client.get("/console/login").status_code == 200  # reading the page is not limited
    dispose_engines()


@pytest.mark.parametrize(
    ("target", "lands_on"),
    [
        ("/console/sessions", "/console/sessions"),
        ("https://evil.example/console/", "/console/"),
        ("//evil.example/console/", "/console/"),
        ("/elsewhere", "/console/"),
        ("/console\\@evil.example", "/console/"),
    ],
)
def test_after_login_only_console_paths_are_followed(
    client: FlaskClient, ann: User, target: str, lands_on: str
) -> None:
    response = login(client, EMAIL, next_path=target)
    assert response.headers["Location"] == lands_on


def test_a_one_time_password_must_be_replaced_before_anything_else(
    client: FlaskClient, db: Session
) -> None:
    _user, one_time = create_user(db, "new@example.com", Role.ADMIN)
    db.commit()
    assert one_time
    login(client, "new@example.com", one_time)
    assert client.get("/console/").headers["Location"] == "/console/password"
    assert client.get("/console/users").headers["Location"] == "/console/password"
    token = form_token(client, "/console/password")
    short = client.post(
        "/console/password",
        data={"csrf_token": token, "current": one_time, "new": "short", "confirm": "short"},
    )
    assert short.status_code == 400 and "at least 12 characters" in short.get_data(as_text=True)
    done = client.post(
        "/console/password",
        data={"csrf_token": token, "current": one_time, "new": PASSWORD, "confirm": PASSWORD},
    )
    assert done.status_code == 302 and done.headers["Location"] == "/console/"
    assert client.get("/console/").status_code == 200


def test_changing_the_password_logs_out_the_other_sessions(
    app: Flask, ann: User, db: Session
) -> None:
    here, there = app.test_client(), app.test_client()
    login(here, EMAIL)
    login(there, EMAIL)
    token = form_token(here, "/console/password")
    new = "another long passphrase"
    here.post(
        "/console/password",
        data={"csrf_token": token, "current": PASSWORD, "new": new, "confirm": new},
    )
    assert here.get("/console/").status_code == 200
    assert there.get("/console/").status_code == 302


def test_totp_login_needs_the_code_and_the_half_session_opens_nothing_else(
    client: FlaskClient, ann: User, db: Session
) -> None:
    secret = begin_enrolment(ann)
    earlier = utcnow() - timedelta(minutes=5)
    assert confirm_enrolment(db, ann, code_at(secret, earlier), now=earlier)
    db.commit()

    response = login(client, EMAIL, next_path="/console/sessions")
    assert response.headers["Location"] == "/console/login/code"
    half = session_cookie(client)
    assert client.get("/console/").headers["Location"] == "/console/login/code"
    token = form_token(client, "/console/login/code")
    wrong = client.post("/console/login/code", data={"csrf_token": token, "code": "000000"})
    assert wrong.status_code == 400
    code = code_at(secret, utcnow())
    done = client.post("/console/login/code", data={"csrf_token": token, "code": code})
    assert done.status_code == 302 and done.headers["Location"] == "/console/sessions"
    full = session_cookie(client)
    assert full and full != half  # a new id once the code is given
    assert client.get("/console/").status_code == 200
    assert half
    client.set_cookie(COOKIE, half, path="/console")
    assert client.get("/console/").status_code == 302

    # The same code again, at a new login: refused.
    other = client.application.test_client()
    login(other, EMAIL)
    replay = other.post(
        "/console/login/code",
        data={"csrf_token": form_token(other, "/console/login/code"), "code": code},
    )
    assert replay.status_code == 400 and "used already" in replay.get_data(as_text=True)


def test_enrolment_from_the_totp_page_and_an_admins_requirement(
    client: FlaskClient, ann: User, db: Session
) -> None:
    ann.totp_required = True
    db.commit()
    login(client, EMAIL)
    assert client.get("/console/").headers["Location"] == "/console/totp"
    page = client.get("/console/totp").get_data(as_text=True)
    assert "Set up two-factor login" in page
    db.refresh(ann)
    assert ann.totp_pending_secret == ""  # a GET changes nothing
    token = form_token(client, "/console/totp")
    client.post("/console/totp/setup", data={"csrf_token": token})
    db.refresh(ann)
    secret = ann.totp_pending_secret
    page = client.get("/console/totp").get_data(as_text=True)
    assert secret in page and "<svg" in page and "otpauth://totp/" in page
    bad = client.post("/console/totp", data={"csrf_token": token, "code": "000000"})
    assert bad.status_code == 400
    good = client.post(
        "/console/totp", data={"csrf_token": token, "code": code_at(secret, utcnow())}
    )
    assert good.status_code == 302
    db.refresh(ann)
    assert ann.totp_secret == secret
    assert client.get("/console/").status_code == 200
    refused = client.post("/console/totp/disable", data={"csrf_token": token})
    assert refused.status_code == 409 and "stays on" in refused.get_data(as_text=True)


def test_a_disabled_account_is_told_so(client: FlaskClient, db: Session) -> None:
    make_user(db, "admin@example.com", Role.ADMIN)
    user = make_user(db, EMAIL, Role.VIEWER)
    user.disabled_at = utcnow()
    db.commit()
    response = login(client, EMAIL)
    assert response.status_code == 400 and "disabled" in response.get_data(as_text=True)


def test_sessions_page_lists_and_revokes_ones_own(app: Flask, ann: User, db: Session) -> None:
    here, there = app.test_client(), app.test_client()
    login(here, EMAIL)
    login(there, EMAIL)
    page = here.get("/console/sessions").get_data(as_text=True)
    assert page.count("<tr>") == 3  # the header and two sessions
    other = db.scalars(select(ConsoleSession).order_by(ConsoleSession.id.desc())).first()
    assert other is not None
    token = form_token(here, "/console/sessions")
    here.post(f"/console/sessions/{other.id}/revoke", data={"csrf_token": token})
    assert there.get("/console/").status_code == 302
    assert here.get("/console/").status_code == 200


@pytest.mark.parametrize(
    ("email", "password", "message"),
    [
        ("ann@example.com\r\nBcc: x@example.com", PASSWORD, "control characters"),
        ("", PASSWORD, "Please enter your email address."),
        (EMAIL, "", "Please enter your password."),
        (EMAIL, "x" * 2000, "That password is too long."),
    ],
)
def test_a_malformed_login_says_what_is_wrong_and_counts_nothing(
    client: FlaskClient, ann: User, db: Session, email: str, password: str, message: str
) -> None:
    response = login(client, email, password)
    assert response.status_code == 400 and message in response.get_data(as_text=True)
    db.refresh(ann)
    assert ann.failed_logins == 0 and session_cookie(client) is None
