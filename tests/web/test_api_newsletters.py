"""Newsletters over the JSON API, with real requests on a real database: the list in display
order and its pages, one newsletter, creating (a taken slug is a 409) and editing with
If-Match (on PostgreSQL, concurrently too); scopes and bad input."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from newsletter import create_app
from newsletter.access.api_tokens import create_token
from newsletter.settings import Settings
from newsletter.store.db import dispose_engines, get_sessionmaker
from newsletter.store.models import SubscriberStatus
from tests.support.readers import Lists, add_subscriber, make_lists, row_counts
from tests.support.services import migrated_postgres_database
from tests.web.test_api_subscribers import run_together
from tests.web.test_openapi import assert_problem


@pytest.fixture
def lists(db: Session) -> Lists:
    return make_lists(db)


def bearer(db: Session, *scopes: str) -> dict[str, str]:
    _, plaintext = create_token(db, "tests", scopes)
    db.commit()
    return {"Authorization": f"Bearer {plaintext}"}


@pytest.fixture
def auth(db: Session) -> dict[str, str]:
    return bearer(db, "newsletters:read", "newsletters:write")


def test_the_list_is_in_display_order_with_reader_counts_and_pages(
    client: FlaskClient, db: Session, lists: Lists, auth: dict[str, str]
) -> None:
    for n in range(2):
        add_subscriber(db, f"a{n}@example.com", SubscriberStatus.ACTIVE, [lists.daily])
    add_subscriber(db, "p@example.com", SubscriberStatus.PENDING, [lists.daily])
    pages: list[list[dict[str, Any]]] = []
    after = ""
    while True:
        body = client.get(f"/api/v1/newsletters?limit=3{after}", headers=auth).get_json()
        pages.append(body["items"])
        if body["next"] is None:
            break
        after = f"&after={body['next']}"
    assert [[n["slug"] for n in p] for p in pages] == [["staff", "daily", "weekend"], ["offers"]]
    daily = pages[0][1]
    assert daily["active_subscribers"] == 2 and daily["categories"] == ["World", "Politics"]
    assert pages[0][0]["public"] is False and daily["kind"] == "digest"
    forged = client.get("/api/v1/newsletters?after=WzFd", headers=auth)  # [1]: one part short
    assert assert_problem(forged, 400)["field"] == "after"


def test_show_create_and_edit_with_if_match(
    client: FlaskClient, db: Session, lists: Lists, auth: dict[str, str]
) -> None:
    shown = client.get("/api/v1/newsletters/weekend", headers=auth)
    assert shown.status_code == 200
    assert shown.get_json()["newsletter"]["default_frequency"] == "weekly"
    assert_problem(client.get("/api/v1/newsletters/nope", headers=auth), 404)

    made = client.post(
        "/api/v1/newsletters",
        json={"slug": "sport", "name": "Sport", "categories": ["Sport"], "public": False},
        headers=auth,
    )
    assert made.status_code == 201, made.get_json()
    assert made.headers["Location"] == "/api/v1/newsletters/sport"
    created = made.get_json()["newsletter"]
    assert (created["kind"], created["public"], created["position"]) == ("digest", False, 5)
    tag = made.headers["ETag"]
    assert client.get("/api/v1/newsletters/sport", headers=auth).headers["ETag"] == tag

    url = "/api/v1/newsletters/sport"
    edit = {"name": "Sport daily", "public": True, "default_frequency": "weekly"}
    changed = client.patch(url, json=edit, headers={**auth, "If-Match": tag})
    assert changed.status_code == 200, changed.get_json()
    out = changed.get_json()["newsletter"]
    assert (out["name"], out["public"], out["default_frequency"]) == ("Sport daily", True, "weekly")
    assert out["categories"] == ["Sport"]  # untouched
    stale = client.patch(url, json={"name": "Late"}, headers={**auth, "If-Match": tag})
    assert assert_problem(stale, 412)["etag"] == changed.headers["ETag"]
    assert client.get(url, headers=auth).get_json()["newsletter"]["name"] == "Sport daily"
    assert_problem(client.patch("/api/v1/newsletters/nope", json={}, headers=auth), 404)


def test_bad_creates_and_edits_are_problems_and_store_nothing(
    client: FlaskClient, db: Session, lists: Lists, auth: dict[str, str]
) -> None:
    before = row_counts(db)
    for body, status in [
        ({"slug": "daily", "name": "Again"}, 409),
        ({"slug": "Bad Slug", "name": "x"}, 400),
        ({"slug": "ok", "name": "two\nlines"}, 400),
        ({"slug": "ok", "name": ""}, 400),
        ({"slug": "ok", "name": "x", "kind": "weekly"}, 400),
        ({"slug": "ok"}, 400),
        ({"slug": "ok", "name": "x", "position": 1}, 400),
    ]:
        assert_problem(client.post("/api/v1/newsletters", json=body, headers=auth), status)
    for edit in ({"name": "  "}, {"name": "a\rb"}, {"slug": "other"}, {"kind": "campaign"}):
        assert_problem(client.patch("/api/v1/newsletters/daily", json=edit, headers=auth), 400)
    assert row_counts(db) == before
    assert client.get("/api/v1/newsletters/daily", headers=auth).get_json()["newsletter"][
        "name"
    ] == ("Morning Briefing")


def test_scopes(client: FlaskClient, db: Session, lists: Lists) -> None:
    read = bearer(db, "newsletters:read")
    assert client.get("/api/v1/newsletters", headers=read).status_code == 200
    refused = client.post("/api/v1/newsletters", json={"slug": "x", "name": "X"}, headers=read)
    assert assert_problem(refused, 403)["scope"] == "newsletters:write"
    patch = client.patch("/api/v1/newsletters/daily", json={"name": "X"}, headers=read)
    assert assert_problem(patch, 403)["scope"] == "newsletters:write"
    other = bearer(db, "subscribers:read")
    assert assert_problem(client.get("/api/v1/newsletters", headers=other), 403)["scope"] == (
        "newsletters:read"
    )


# --- Races, on PostgreSQL ------------------------------------------------------------------------


@pytest.fixture
def pg_api(settings: Settings) -> Iterator[tuple[Flask, dict[str, str]]]:
    """The app on a fresh PostgreSQL database with the usual lists and a token."""
    with migrated_postgres_database() as url:
        app = create_app(replace(settings, database_url=url))
        db = get_sessionmaker(url)()
        make_lists(db)
        yield app, bearer(db, "newsletters:read", "newsletters:write")
        db.close()
        dispose_engines()


def test_concurrent_creates_and_edits_apply_once(pg_api: tuple[Flask, dict[str, str]]) -> None:
    app, auth = pg_api
    made = run_together(
        4,
        lambda n: (
            app.test_client()
            .post("/api/v1/newsletters", json={"slug": "sport", "name": f"S{n}"}, headers=auth)
            .status_code
        ),
    )
    assert sorted(made) == [201, 409, 409, 409], made
    tag = app.test_client().get("/api/v1/newsletters/sport", headers=auth).headers["ETag"]
    edited = run_together(
        4,
        lambda n: (
            app.test_client()
            .patch(
                "/api/v1/newsletters/sport",
                json={"name": f"Edit {n}"},
                headers={**auth, "If-Match": tag},
            )
            .status_code
        ),
    )
    assert sorted(edited) == [200, 412, 412, 412], edited
