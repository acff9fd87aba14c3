"""Console helpers for tests: accounts with known passwords, logging in, form tokens."""

from __future__ import annotations

import re

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

from newsletter.access.console_sessions import start_session
from newsletter.access.roles import Role
from newsletter.access.users import create_user
from newsletter.settings import Settings
from newsletter.store.models import User
from newsletter.web.console.guard import COOKIE

PASSWORD = "correct horse battery staple"


def make_user(db: Session, email: str, role: Role, password: str = PASSWORD) -> User:
    """A committed account with ``password`` (no one-time password to change)."""
    user, _ = create_user(db, email, role, password=password)
    db.commit()
    return user


def form_token(client: FlaskClient, path: str = "/console/login") -> str:
    """The CSRF token of a console page's forms (the page a signed-in login page leads to)."""
    html = client.get(path, follow_redirects=True).get_data(as_text=True)
    match = re.search(r'name="csrf_token"(?: type="hidden")? value="([^"]+)"', html)
    assert match, f"{path} has no CSRF token"
    return match.group(1)


def login(
    client: FlaskClient, email: str, password: str = PASSWORD, next_path: str = ""
) -> TestResponse:
    """Post the login form as a browser would (token from the login page)."""
    token = form_token(client)
    path = "/console/login" + (f"?next={next_path}" if next_path else "")
    return client.post(path, data={"csrf_token": token, "email": email, "password": password})


def session_cookie(client: FlaskClient) -> str | None:
    """The console session id the browser holds, if any."""
    cookie = client.get_cookie(COOKIE, path="/console")
    return cookie.value if cookie is not None else None


def signed_in(app: Flask, db: Session, settings: Settings, user: User) -> FlaskClient:
    """A browser with a live session of ``user`` (made by the core, no password round trip)."""
    _row, token = start_session(db, settings, user)
    db.commit()
    client = app.test_client()
    client.set_cookie(COOKIE, token, path="/console")
    return client
