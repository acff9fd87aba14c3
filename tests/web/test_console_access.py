"""Who may open what in the console, route by route and role by role; CSRF on every form; and
API tokens that never do more than their owner's role."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from newsletter.access.api_tokens import create_token
from newsletter.access.console_sessions import start_session
from newsletter.access.roles import Role, role_allows
from newsletter.access.users import set_role
from newsletter.settings import Settings
from newsletter.store.models import Subscriber, SubscriberStatus, User
from tests.support.console import form_token, make_user, signed_in
from tests.support.readers import add_subscriber, make_lists, row_counts

PUBLIC = None
# Every console endpoint and the least role that may use it (None: no session needed). A new
# console route fails test_the_table_names_every_console_route until it is added here.
EXPECTED: dict[str, Role | None] = {
    "console.login": PUBLIC,
    "console.login_code": PUBLIC,
    "console.logout": PUBLIC,
    # One's own account: every role, a viewer too.
    "console.password": Role.VIEWER,
    "console.totp": Role.VIEWER,
    "console.totp_setup": Role.VIEWER,
    "console.totp_confirm": Role.VIEWER,
    "console.totp_disable": Role.VIEWER,
    "console.sessions": Role.VIEWER,
    "console.revoke": Role.VIEWER,
    "console.revoke_others": Role.VIEWER,
    # Reading.
    "console.dashboard": Role.VIEWER,
    # Managing people: admins only.
    "console.users": Role.ADMIN,
    "console.users_create": Role.ADMIN,
    "console.users_role": Role.ADMIN,
    "console.users_disable": Role.ADMIN,
    "console.users_enable": Role.ADMIN,
    "console.users_require_totp": Role.ADMIN,
    # Readers: a viewer finds and reads them; changing them, importing and exporting (personal
    # data in bulk, to a file that leaves the service) is an editor's.
    "console.subscribers": Role.VIEWER,
    "console.subscriber": Role.VIEWER,
    "console.subscribers_export": Role.EDITOR,
    "console.subscriber_unsubscribe": Role.EDITOR,
    "console.subscriber_suppress": Role.EDITOR,
    "console.subscriber_erase_confirm": Role.EDITOR,
    "console.subscriber_erase": Role.EDITOR,
    "console.subscribers_import": Role.EDITOR,
    "console.subscribers_import_preview": Role.EDITOR,
    "console.subscribers_import_apply": Role.EDITOR,
}
# What changes nothing but one's own account; every other console POST needs more than a viewer.
SELF_SERVICE = {
    "console.login",
    "console.login_code",
    "console.logout",
    "console.password",
    "console.totp_setup",
    "console.totp_confirm",
    "console.totp_disable",
    "console.revoke",
    "console.revoke_others",
}
# The ids of rules with <int:...> (the reader of the ``reader`` fixture is the first row).
IDS = {"session_id": 1, "subscriber_id": 1}
RANK = {Role.VIEWER: 0, Role.EDITOR: 1, Role.ADMIN: 2}


def console_routes(app: Flask) -> list[tuple[str, str, str]]:
    """(endpoint, method, URL rule) for every console route and method."""
    return sorted(
        (rule.endpoint, method, rule.rule)
        for rule in app.url_map.iter_rules()
        if rule.endpoint.startswith("console.")
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})
    )


def url_for_rule(rule: str, ids: dict[str, int]) -> str:
    return re.sub(r"<int:(\w+)>", lambda m: str(ids[m.group(1)]), rule)


@pytest.fixture
def reader(db: Session) -> Subscriber:
    """A reader on a list, so the reader's pages have someone to show."""
    return add_subscriber(
        db, "reader@example.com", SubscriberStatus.ACTIVE, [make_lists(db).daily], name="Ann"
    )


@pytest.fixture
def people(db: Session, reader: Subscriber) -> dict[str, User]:
    return {
        "admin": make_user(db, "admin@example.com", Role.ADMIN),
        "editor": make_user(db, "editor@example.com", Role.EDITOR),
        "viewer": make_user(db, "viewer@example.com", Role.VIEWER),
        "target": make_user(db, "target@example.com", Role.VIEWER),
    }


def test_the_table_names_every_console_route_with_its_guard(app: Flask) -> None:
    endpoints = {endpoint for endpoint, _, _ in console_routes(app)}
    assert endpoints == set(EXPECTED)
    for endpoint, role in EXPECTED.items():
        assert app.view_functions[endpoint].console_role == role, endpoint


def test_only_self_service_posts_are_open_to_a_viewer(app: Flask) -> None:
    for endpoint, method, _ in console_routes(app):
        if method == "POST" and EXPECTED[endpoint] in (PUBLIC, Role.VIEWER):
            assert endpoint in SELF_SERVICE, f"{endpoint} lets a viewer change something"


@pytest.mark.parametrize("role", [None, Role.VIEWER, Role.EDITOR, Role.ADMIN])
def test_every_route_for_every_role(
    app: Flask,
    db: Session,
    settings: Settings,
    people: dict[str, User],
    reader: Subscriber,
    role: Role | None,
) -> None:
    seen: list[tuple[str, str, int]] = []
    for endpoint, method, rule in console_routes(app):
        if role is None:
            client = app.test_client()
        else:
            client = signed_in(app, db, settings, people[role.value])
        other_session, _ = start_session(db, settings, people[role.value if role else "target"])
        db.commit()
        ids = {
            "user_id": people["target"].id,
            "session_id": other_session.id,
            "subscriber_id": reader.id,
        }
        url = url_for_rule(rule, ids)
        data: dict[str, Any] = {}
        if method == "POST":
            data["csrf_token"] = form_token(client, "/console/login")
        response = client.open(url, method=method, data=data)
        seen.append((endpoint, method, response.status_code))
        needed = EXPECTED[endpoint]
        location = response.headers.get("Location", "")
        if needed is PUBLIC:
            assert response.status_code < 500 and response.status_code != 403, (endpoint, method)
        elif role is None:
            assert response.status_code == 302 and location.startswith("/console/login"), (
                endpoint,
                method,
            )
        elif RANK[role] < RANK[needed]:
            assert response.status_code == 403, (endpoint, method, role)
            assert "not for your role" in response.get_data(as_text=True)
        else:
            assert response.status_code not in (403, 500), (endpoint, method, role)
            assert not location.startswith("/console/login"), (endpoint, method, role)
    assert len(seen) == len(console_routes(app))


def test_a_viewer_changes_nothing_anywhere(
    app: Flask, db: Session, settings: Settings, people: dict[str, User]
) -> None:
    viewer = signed_in(app, db, settings, people["viewer"])
    token = form_token(viewer, "/console/")
    before = row_counts(db)
    for endpoint, method, rule in console_routes(app):
        if method != "POST" or endpoint in SELF_SERVICE:
            continue
        url = url_for_rule(rule, IDS | {"user_id": people["target"].id})
        data = {"csrf_token": token, "email": "new@example.com", "role": "admin"}
        assert viewer.post(url, data=data).status_code == 403, endpoint
    assert row_counts(db) == before
    db.refresh(people["target"])
    assert people["target"].role is Role.VIEWER and people["target"].disabled_at is None


def test_every_console_post_without_its_csrf_token_is_refused(
    app: Flask, db: Session, settings: Settings, people: dict[str, User]
) -> None:
    admin = signed_in(app, db, settings, people["admin"])
    form_token(admin, "/console/")  # the browser has a CSRF session, the post just lacks it
    before = row_counts(db)
    posts = [(e, r) for e, m, r in console_routes(app) if m == "POST"]
    assert len(posts) >= 12
    for endpoint, rule in posts:
        url = url_for_rule(rule, IDS | {"user_id": people["target"].id})
        for data in ({}, {"csrf_token": "forged"}):
            response = admin.post(url, data={**data, "email": "x@example.com", "role": "admin"})
            assert response.status_code == 400, endpoint
            assert "Form expired" in response.get_data(as_text=True), endpoint
    assert row_counts(db) == before
    assert admin.get("/console/").status_code == 200  # not even logged out


def test_every_form_on_every_console_page_carries_the_token(
    app: Flask, db: Session, settings: Settings, people: dict[str, User]
) -> None:
    admin = signed_in(app, db, settings, people["admin"])
    pages = [r for e, m, r in console_routes(app) if m == "GET" and "<" not in r]
    checked = 0
    for path in pages:
        html = admin.get(path, follow_redirects=True).get_data(as_text=True)
        for form in re.findall(r"<form\b.*?</form>", html, flags=re.S):
            if 'method="post"' in form:
                assert 'name="csrf_token"' in form, (path, form[:200])
                checked += 1
    assert checked >= 8


def test_a_viewers_token_cannot_write_through_the_api(
    client: FlaskClient, db: Session, people: dict[str, User]
) -> None:
    _row, plaintext = create_token(db, "cms", ["posts:write"], user=people["editor"])
    db.commit()
    headers = {"Authorization": f"Bearer {plaintext}"}
    post = {
        "guid": "p-1",
        "url": "https://news.example.com/a",
        "title": "Headline",
        "published_at": "2024-07-14T08:00:00+02:00",
    }
    created = client.post("/api/v1/posts", json=post, headers=headers)
    assert created.status_code == 201, created.json
    set_role(db, people["editor"], Role.VIEWER)
    db.commit()
    refused = client.post("/api/v1/posts", json={**post, "guid": "p-2"}, headers=headers)
    assert refused.status_code == 403
    assert refused.json is not None and refused.json["scope"] == "posts:write"


# --- API routes, by the role of the token's owner ------------------------------------------------


def api_routes(app: Flask) -> list[tuple[str, str, str]]:
    """(method, URL rule, scope) of every route that asks for a bearer token's scope."""
    return sorted(
        (method, rule.rule, app.view_functions[rule.endpoint].required_scope)
        for rule in app.url_map.iter_rules()
        if hasattr(app.view_functions[rule.endpoint], "required_scope")
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})
    )


@pytest.mark.parametrize("role", [Role.VIEWER, Role.EDITOR, Role.ADMIN])
def test_every_api_route_for_a_token_of_every_role(
    app: Flask, client: FlaskClient, db: Session, people: dict[str, User], role: Role
) -> None:
    # Granted every scope (as if made before a demotion): the owner's role decides what is left.
    row, plaintext = create_token(db, f"{role.value}-token", ["all"])
    row.user_id = people[role.value].id
    db.commit()
    headers = {"Authorization": f"Bearer {plaintext}"}
    routes = api_routes(app)
    assert len(routes) >= 20
    for method, rule, scope in routes:
        url = re.sub(r"<(?:\w+:)?(\w+)>", lambda m: "999" if "id" in m.group(1) else "x", rule)
        response = client.open(url, method=method, headers=headers, json={})
        if role_allows(role, scope):
            assert response.status_code not in (401, 403, 500), (method, rule, role)
        else:
            assert response.status_code == 403, (method, rule, role)
            assert response.json is not None and response.json["scope"] == scope
