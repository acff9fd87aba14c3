"""The OpenAPI 3.1 document of /api/v1: valid, covering every route both ways, honest about
scopes, and rendered as a readable page; the problem+json shape of every API error; the one
pagination style of the lists."""

from __future__ import annotations

import re
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from openapi_spec_validator import validate
from sqlalchemy.orm import Session

from newsletter.access.api_tokens import SCOPES, create_token
from newsletter.issues.schedules import create_schedule
from tests.support import dispatching as seed

ARGUMENT = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


def spec(client: FlaskClient) -> dict[str, Any]:
    """The served document."""
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.get_json()
    return document


def operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """Every operation of the document by (METHOD, path)."""
    return {
        (method.upper(), path): op
        for path, item in document["paths"].items()
        for method, op in item.items()
    }


def test_the_document_is_valid_openapi_3_1(client: FlaskClient) -> None:
    document = spec(client)
    assert document["openapi"].startswith("3.1")
    validate(document)  # raises on any violation of the OpenAPI 3.1 schema


def test_the_document_covers_every_api_route_and_no_other(app: Flask, client: FlaskClient) -> None:
    routed = {
        (method, ARGUMENT.sub(r"{\1}", rule.rule))
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/api/v1/")
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}
    }
    documented = set(operations(spec(client)))
    assert routed, "no API routes?"
    # An undocumented route: add @operation(...) under its @require_token / @verified_by.
    assert routed - documented == set()
    assert documented - routed == set()


def test_each_operation_names_the_scope_or_the_mechanism_it_needs(
    app: Flask, client: FlaskClient
) -> None:
    by_endpoint = {
        rule.endpoint.removeprefix("api."): app.view_functions[rule.endpoint]
        for rule in app.url_map.iter_rules()
        if rule.endpoint.startswith("api.")
    }
    for key, op in operations(spec(client)).items():
        view = by_endpoint[op["operationId"]]
        scope = getattr(view, "required_scope", None)
        if scope:
            assert scope in SCOPES
            assert op["x-required-scope"] == scope, key
            assert op["security"] == [{"bearer": [scope]}], key
            assert {"401", "403"} <= set(op["responses"]), key
        else:
            assert op["security"] == [], key
            assert op["x-verified-by"] == view.verified_by, key
        problems = [s for s in op["responses"] if s.startswith(("4", "5"))]
        assert "500" in problems, key
        for status in problems:
            assert set(op["responses"][status]["content"]) == {"application/problem+json"}, key


def test_the_document_is_public_and_cacheable(client: FlaskClient) -> None:
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200 and "Authorization" not in response.request.headers
    assert response.cache_control.public and response.cache_control.max_age


def test_the_docs_page_lists_every_operation_with_its_scope(client: FlaskClient) -> None:
    response = client.get("/api/v1/docs")
    assert response.status_code == 200 and response.mimetype == "text/html"
    # Our stylesheet only: no script, no CDN.
    assert "script-src" not in response.headers["Content-Security-Policy"]
    page = response.get_data(as_text=True)
    assert "<script" not in page and "https://cdn" not in page
    for (method, path), op in operations(spec(client)).items():
        assert f"{method} {path}" in page
        if "x-required-scope" in op:
            assert f"<code>{op['x-required-scope']}</code>" in page


# --- One error shape ------------------------------------------------------------------------------


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    """``response`` is an RFC 9457 problem of ``status``."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    problem: dict[str, Any] = response.get_json()
    assert {"type", "title", "status", "detail"} <= set(problem)
    assert problem["status"] == status and problem["detail"]
    return problem


def bearer(db: Session, *scopes: str) -> dict[str, str]:
    """Headers with a fresh token granted ``scopes`` (every scope by default)."""
    _, plaintext = create_token(db, "openapi", scopes or SCOPES)
    db.commit()
    return {"Authorization": f"Bearer {plaintext}"}


def test_every_api_error_is_a_problem(app: Flask, db: Session) -> None:
    @app.get("/api/v1/boom")
    def boom() -> str:
        raise RuntimeError("a bug")

    client = app.test_client()
    assert_problem(client.get("/api/v1/no-such-thing"), 404)
    not_allowed = assert_problem(client.put("/api/v1/issues"), 405)
    assert not_allowed["title"] == "Method Not Allowed"
    missing = client.get("/api/v1/issues")
    assert_problem(missing, 401)
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    forged = client.get("/api/v1/issues", headers={"Authorization": "Bearer nlt_forged"})
    assert_problem(forged, 401)
    assert forged.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    narrow = client.get("/api/v1/issues", headers=bearer(db, "posts:read"))
    assert assert_problem(narrow, 403)["scope"] == "issues:read"
    assert narrow.headers["WWW-Authenticate"] == (
        'Bearer error="insufficient_scope", scope="issues:read"'
    )
    auth = bearer(db)
    assert_problem(client.post("/api/v1/issues", data="x", headers=auth), 415)
    broken = client.post("/api/v1/issues", data="{", content_type="application/json", headers=auth)
    assert_problem(broken, 400)
    invalid = assert_problem(
        client.post("/api/v1/issues", json={"newsletter": 7, "bogus": 1}, headers=auth), 400
    )
    assert {"loc": ["body", "newsletter"], "msg": "Input should be a valid string"} in invalid[
        "errors"
    ]
    assert ["body", "bogus"] in [e["loc"] for e in invalid["errors"]]
    assert_problem(client.get("/api/v1/issues?limit=0", headers=auth), 400)
    assert_problem(client.get("/api/v1/issues/999", headers=auth), 404)
    assert_problem(client.get("/api/v1/boom"), 500)


def test_pages_other_than_the_api_keep_their_html_errors(client: FlaskClient) -> None:
    response = client.get("/no-such-page")
    assert response.status_code == 404 and response.mimetype == "text/html"


# --- One pagination style -------------------------------------------------------------------------


def walk(client: FlaskClient, path: str, headers: dict[str, str]) -> list[list[int]]:
    """The ids of each page of ``path`` with limit=2, following ``next``."""
    pages, after = [], ""
    while True:
        response = client.get(f"{path}?limit=2{after}", headers=headers)
        assert response.status_code == 200, response.get_data(as_text=True)
        body = response.get_json()
        assert set(body) == {"items", "next"}
        pages.append([item["id"] for item in body["items"]])
        if body["next"] is None:
            return pages
        after = f"&after={body['next']}"


def test_lists_page_by_cursor(client: FlaskClient, db: Session) -> None:
    seed.newsletter(db, "daily")
    schedules = [create_schedule(db, newsletter="daily", cron=f"0 {h} * * *") for h in range(5)]
    seed.posts(db, 5)
    db.commit()
    auth = bearer(db)
    ids = [s.id for s in schedules]
    assert walk(client, "/api/v1/schedules", auth) == [ids[0:2], ids[2:4], ids[4:]]
    posts = walk(client, "/api/v1/posts", auth)
    assert [len(p) for p in posts] == [2, 2, 1]
    assert len({i for p in posts for i in p}) == 5
    for forged in ("nope", "WzFd", "bnVsbA"):  # not base64 JSON, [1] for posts, null
        response = client.get(f"/api/v1/posts?after={forged}", headers=auth)
        assert assert_problem(response, 400)["field"] == "after"
