"""The API's scoped tokens: every route names the scope it needs; a valid token without it is a
403 that names it, a missing or bad token a 401, a token with only that scope gets through."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from newsletter.access.api_tokens import SCOPES, create_token
from newsletter.store.models import NewsletterKind
from tests.support import dispatching as seed

# Every route of the API with the scope it needs: a route missing here fails the first test.
ROUTES = [
    ("GET", "/api/v1/issues", "issues:read"),
    ("POST", "/api/v1/issues", "issues:write"),
    ("GET", "/api/v1/issues/1", "issues:read"),
    ("PATCH", "/api/v1/issues/1", "issues:write"),
    *[
        ("POST", f"/api/v1/issues/1/{action}", "issues:send")
        for action in (
            "send",
            "pause",
            "resume",
            "cancel",
            "resend-failed",
            "hold",
            "release",
            "test",
        )
    ],
    ("GET", "/api/v1/schedules", "schedules:read"),
    ("GET", "/api/v1/schedules/1", "schedules:read"),
    ("POST", "/api/v1/schedules", "schedules:write"),
    ("PATCH", "/api/v1/schedules/1", "schedules:write"),
    ("DELETE", "/api/v1/schedules/1", "schedules:write"),
    ("GET", "/api/v1/newsletters/daily/preview", "issues:read"),
    ("POST", "/api/v1/posts", "posts:write"),
    ("GET", "/api/v1/posts", "posts:read"),
    ("DELETE", "/api/v1/posts/p-1", "posts:write"),
    ("POST", "/api/v1/inbound", "inbound:write"),
    ("GET", "/api/v1/webhooks", "webhooks:read"),
    ("POST", "/api/v1/webhooks", "webhooks:write"),
    ("GET", "/api/v1/feeds", "feeds:read"),
    ("POST", "/api/v1/feeds", "feeds:write"),
    ("GET", "/api/v1/feeds/1", "feeds:read"),
    ("DELETE", "/api/v1/feeds/1", "feeds:write"),
    ("GET", "/api/v1/webhooks/1", "webhooks:read"),
    ("PATCH", "/api/v1/webhooks/1", "webhooks:write"),
    ("DELETE", "/api/v1/webhooks/1", "webhooks:write"),
    ("GET", "/api/v1/webhooks/1/deliveries", "webhooks:read"),
    ("POST", "/api/v1/webhooks/1/test", "webhooks:write"),
    ("GET", "/api/v1/subscribers", "subscribers:read"),
    ("POST", "/api/v1/subscribers", "subscribers:write"),
    ("GET", "/api/v1/subscribers/1", "subscribers:read"),
    ("PATCH", "/api/v1/subscribers/1", "subscribers:write"),
    ("DELETE", "/api/v1/subscribers/1", "subscribers:write"),
    ("POST", "/api/v1/subscribers/1/unsubscribe", "subscribers:write"),
    ("GET", "/api/v1/issues/1/deliveries", "subscribers:read"),
    ("GET", "/api/v1/suppressions", "subscribers:read"),
    ("POST", "/api/v1/suppressions", "subscribers:write"),
    ("GET", "/api/v1/newsletters", "newsletters:read"),
    ("POST", "/api/v1/newsletters", "newsletters:write"),
    ("GET", "/api/v1/newsletters/daily", "newsletters:read"),
    ("PATCH", "/api/v1/newsletters/daily", "newsletters:write"),
]
# The provider webhooks authenticate by the provider's signature instead (test_api_webhooks.py).
WEBHOOK_ROUTES = [
    ("POST", "/api/v1/webhooks/ses", "SNS message signature"),
    ("POST", "/api/v1/webhooks/postmark", "HTTP basic auth"),
    ("POST", "/api/v1/webhooks/mailgun", "Mailgun HMAC signature"),
    ("POST", "/api/v1/webhooks/sendgrid", "SendGrid ECDSA signature"),
]
# The API's own documentation is public (tests/web/test_openapi.py).
PUBLIC_ROUTES = [
    ("GET", "/api/v1/openapi.json", "none: public"),
    ("GET", "/api/v1/docs", "none: public"),
]


def bearer(db: Session, *scopes: str) -> dict[str, str]:
    """Headers with a fresh token granted ``scopes``."""
    _, plaintext = create_token(db, "scoped", scopes)
    db.commit()
    return {"Authorization": f"Bearer {plaintext}"}


def call(client: FlaskClient, method: str, path: str, headers: dict[str, str]) -> Any:
    """Send an empty JSON object (routes check their scope before the body)."""
    return client.open(path, method=method, json={}, headers=headers)


def test_every_api_route_declares_the_scope_in_the_table(app: Flask) -> None:
    declared = {}
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("api."):
            continue
        view = app.view_functions[rule.endpoint]
        # A route without a scope must say what authenticates it instead.
        how = getattr(view, "required_scope", None) or view.verified_by
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            declared[(method, rule.rule)] = how
    assert declared
    others = {how for _, _, how in WEBHOOK_ROUTES + PUBLIC_ROUTES}
    assert set(declared.values()) <= set(SCOPES) | others
    routed = {}
    for method, path, scope in ROUTES + WEBHOOK_ROUTES + PUBLIC_ROUTES:
        rule = app.url_map.bind("localhost").match(path, method=method, return_rule=True)[0]
        routed[(method, rule.rule)] = scope
    assert routed == declared


@pytest.mark.parametrize(("method", "path", "scope"), ROUTES)
def test_a_token_without_the_scope_is_a_403_that_names_it(
    client: FlaskClient, db: Session, method: str, path: str, scope: str
) -> None:
    others = [s for s in SCOPES if s != scope]
    response = call(client, method, path, bearer(db, *others))
    assert response.status_code == 403
    assert response.mimetype == "application/problem+json"
    problem = response.get_json()
    assert problem["status"] == 403 and problem["title"] == "Forbidden"
    assert problem["scope"] == scope
    assert f"'{scope}'" in problem["detail"]
    assert f"--scope {scope}" in problem["detail"]


@pytest.mark.parametrize(("method", "path", "scope"), ROUTES)
def test_a_token_with_only_the_scope_gets_past_the_check(
    client: FlaskClient, db: Session, method: str, path: str, scope: str
) -> None:
    response = call(client, method, path, bearer(db, scope))
    # The route itself answers (often 400 for the empty body, or 404 for id 1): not auth.
    assert response.status_code not in (401, 403), response.get_data(as_text=True)
    assert response.status_code < 500


@pytest.mark.parametrize(("method", "path", "scope"), ROUTES)
def test_a_missing_or_bad_token_stays_a_401(
    client: FlaskClient, method: str, path: str, scope: str
) -> None:
    assert call(client, method, path, {}).status_code == 401
    forged = {"Authorization": "Bearer nlt_forged"}
    assert call(client, method, path, forged).get_json()["status"] == 401


ARTICLE = {
    "guid": "p-1",
    "url": "https://news.example.com/a",
    "title": "Headline",
    "published_at": "2024-07-14T08:00:00+00:00",
}
CAMPAIGN = {"newsletter": "offers", "subject": "Half price", "text": "This weekend only."}


@pytest.mark.parametrize(
    ("scope", "method", "path", "body", "status"),
    [
        ("posts:write", "POST", "/api/v1/posts", ARTICLE, 201),
        ("posts:read", "GET", "/api/v1/posts", None, 200),
        ("issues:read", "GET", "/api/v1/issues", None, 200),
        ("issues:write", "POST", "/api/v1/issues", CAMPAIGN, 201),
        ("schedules:read", "GET", "/api/v1/schedules", None, 200),
        (
            "schedules:write",
            "POST",
            "/api/v1/schedules",
            {"newsletter": "daily", "cron": "0 7 * * *"},
            201,
        ),
    ],
)
def test_each_scope_alone_does_its_work(
    client: FlaskClient,
    db: Session,
    scope: str,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    status: int,
) -> None:
    seed.newsletter(db, "daily")
    seed.newsletter(db, "offers", kind=NewsletterKind.CAMPAIGN)
    response = client.open(path, method=method, json=body, headers=bearer(db, scope))
    assert response.status_code == status, response.get_data(as_text=True)


def test_issues_send_alone_steers_an_issue(client: FlaskClient, db: Session) -> None:
    seed.newsletter(db, "offers", kind=NewsletterKind.CAMPAIGN)
    created = client.post("/api/v1/issues", json=CAMPAIGN, headers=bearer(db, "issues:write"))
    issue_id = created.get_json()["issue"]["id"]
    sender = bearer(db, "issues:send")
    assert client.post(f"/api/v1/issues/{issue_id}/cancel", headers=sender).status_code == 200
    reader = bearer(db, "issues:read")
    shown = client.get(f"/api/v1/issues/{issue_id}", headers=reader).get_json()
    assert shown["issue"]["status"] == "cancelled"
