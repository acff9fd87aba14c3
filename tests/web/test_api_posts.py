"""CMS push over the JSON API: auth, validation, size limits, atomicity, listing and retraction."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsletter import create_app
from newsletter.access.api_tokens import create_token, revoke_token
from newsletter.settings import Settings
from newsletter.store.models import Post
from tests.support.readers import row_counts


@pytest.fixture
def token(db: Session) -> str:
    _row, plaintext = create_token(db, "cms", ["posts:write", "posts:read"])
    db.commit()
    return plaintext


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def article(n: int = 1, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "guid": f"cms-{n}",
        "url": f"https://news.example.com/2024/07/14/story-{n}/",
        "title": f"Story {n}: Pakistan&#8217;s week",
        "published_at": "2024-07-14T10:00:00+02:00",
        "summary": "<p>A short summary &amp; more.</p>",
        "content_html": '<p onclick="x()">Body <script>alert(1)</script><a href="/rel">r</a></p>',
        "author": "Lillian Hocker",
        "categories": ["World", "Asia"],
        "image_url": "https://news.example.com/img.jpg",
    }
    body.update(overrides)
    return body


def stored(db: Session) -> list[Post]:
    db.expire_all()
    return list(db.scalars(select(Post).order_by(Post.id)))


def test_push_one_post_creates_it_clean_and_in_utc(
    client: FlaskClient, token: str, db: Session
) -> None:
    response = client.post("/api/v1/posts", json=article(), headers=auth(token))
    assert response.status_code == 201, response.json
    body = response.json
    assert body is not None and body["created"] == 1
    (post,) = stored(db)
    assert body["posts"] == [{"id": post.id, "guid": "cms-1", "status": "created"}]
    assert post.title == "Story 1: Pakistan\u2019s week"
    assert post.summary == "A short summary & more."
    assert post.published_at.isoformat() == "2024-07-14T08:00:00+00:00"
    assert "<script" not in post.content_html and "onclick" not in post.content_html
    assert 'href="https://news.example.com/rel"' in post.content_html
    assert post.categories == ["World", "Asia"]


def test_push_again_updates_or_leaves_unchanged(
    client: FlaskClient, token: str, db: Session
) -> None:
    assert client.post("/api/v1/posts", json=article(), headers=auth(token)).status_code == 201
    same = client.post("/api/v1/posts", json=article(), headers=auth(token))
    assert same.status_code == 200 and same.json is not None
    assert same.json["unchanged"] == 1
    edited = client.post(
        "/api/v1/posts", json=article(title="Corrected headline"), headers=auth(token)
    )
    assert edited.status_code == 200 and edited.json is not None
    assert edited.json["posts"][0]["status"] == "updated"
    assert [p.title for p in stored(db)] == ["Corrected headline"]


def test_push_a_list(client: FlaskClient, token: str, db: Session) -> None:
    client.post("/api/v1/posts", json=article(1), headers=auth(token))
    response = client.post(
        "/api/v1/posts", json=[article(1, title="New"), article(2)], headers=auth(token)
    )
    assert response.status_code == 201 and response.json is not None
    assert [p["status"] for p in response.json["posts"]] == ["updated", "created"]
    assert len(stored(db)) == 2


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer nlt_not-a-real-token"},
    ],
)
def test_push_needs_a_valid_token(
    client: FlaskClient, db: Session, headers: dict[str, str]
) -> None:
    response = client.post("/api/v1/posts", json=article(), headers=headers)
    assert response.status_code == 401
    assert response.json is not None and response.json["status"] == 401
    assert stored(db) == []


def test_a_revoked_token_is_refused(client: FlaskClient, db: Session) -> None:
    row, plaintext = create_token(db, "old-cms", ["posts:read"])
    revoke_token(db, row.id)
    db.commit()
    assert client.get("/api/v1/posts", headers=auth(plaintext)).status_code == 401


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (article(title=""), "title"),
        (article(published_at="2024-07-14T10:00:00"), "published_at"),
        (article(published_at="14/07/2024"), "published_at"),
        (article(url="not a url"), "url"),
        (article(categories="World"), "categories"),
        (article(extra=1), "extra"),
        ({k: v for k, v in article().items() if k != "guid"}, "guid"),
        ([article(1), article(2, published_at=None)], "[1].published_at"),
        ([article(1), "nope"], "[1].post"),
    ],
)
def test_validation_errors_name_the_field_and_store_nothing(
    client: FlaskClient, token: str, db: Session, payload: Any, field: str
) -> None:
    response = client.post("/api/v1/posts", json=payload, headers=auth(token))
    assert response.status_code == 400
    problem = response.json or {}
    assert problem["field"] == field
    assert field in problem["detail"]
    assert problem["errors"][0]["loc"][0] == "body"
    # The valid post in the same request was not stored either: all or nothing.
    assert stored(db) == []


def test_bad_bodies_are_400(client: FlaskClient, token: str, db: Session) -> None:
    for data, content_type in (
        ("not json", "application/json"),
        ("[]", "application/json"),
        ('"a string"', "application/json"),
        (json.dumps(article()), "text/plain"),
    ):
        response = client.post(
            "/api/v1/posts", data=data, content_type=content_type, headers=auth(token)
        )
        assert response.status_code == 400, data
        assert response.is_json
    assert stored(db) == []


def test_oversized_bodies_are_413_json(
    client: FlaskClient, token: str, db: Session, app: Flask, settings: Settings
) -> None:
    too_many = [article(n) for n in range(101)]
    response = client.post("/api/v1/posts", json=too_many, headers=auth(token))
    assert response.status_code == 413
    assert response.json is not None and "at most 100" in response.json["detail"]

    limit = settings.posts_api_max_bytes
    huge = article(content_html="<p>" + "x" * limit + "</p>")
    response = client.post("/api/v1/posts", json=huge, headers=auth(token))
    assert response.status_code == 413
    assert response.is_json and response.json is not None
    assert response.json["status"] == 413
    assert stored(db) == []


def test_articles_larger_than_a_form_are_accepted(
    client: FlaskClient, token: str, db: Session, settings: Settings
) -> None:
    # The site-wide body limit is for forms; a long article must still fit through the API.
    body = "<p>" + "word " * (settings.max_body_bytes // 5 + 100) + "</p>"
    response = client.post("/api/v1/posts", json=article(content_html=body), headers=auth(token))
    assert response.status_code == 201
    assert len(stored(db)[0].content_html) > settings.max_body_bytes


def test_list_posts_since_and_limit(client: FlaskClient, token: str) -> None:
    client.post(
        "/api/v1/posts",
        json=[
            article(1, published_at="2024-07-12T08:00:00Z"),
            article(2, published_at="2024-07-13T08:00:00Z"),
            article(3, published_at="2024-07-14T08:00:00Z"),
        ],
        headers=auth(token),
    )
    everything = client.get("/api/v1/posts", headers=auth(token))
    assert everything.status_code == 200 and everything.json is not None
    assert [p["guid"] for p in everything.json["items"]] == ["cms-3", "cms-2", "cms-1"]
    recent = client.get(
        "/api/v1/posts?since=2024-07-12T09:00:00%2B00:00&limit=1", headers=auth(token)
    )
    assert recent.json is not None
    assert [p["guid"] for p in recent.json["items"]] == ["cms-3"]
    first = recent.json["items"][0]
    assert first["published_at"] == "2024-07-14T08:00:00+00:00"
    assert first["url"] == "https://news.example.com/2024/07/14/story-3/"
    for query in ("since=yesterday", "since=2024-07-12T09:00:00", "limit=0", "limit=500"):
        bad = client.get(f"/api/v1/posts?{query}", headers=auth(token))
        assert bad.status_code == 400, query
    assert client.get("/api/v1/posts").status_code == 401


def test_delete_retracts_by_guid_or_id(client: FlaskClient, token: str, db: Session) -> None:
    guid = "https://news.example.com/?p=1041"
    client.post("/api/v1/posts", json=[article(1, guid=guid), article(2)], headers=auth(token))
    retracted = client.delete(
        "/api/v1/posts/https%3A%2F%2Fnews.example.com%2F%3Fp%3D1041", headers=auth(token)
    )
    assert retracted.status_code == 200, retracted.json
    assert retracted.json is not None and retracted.json["guid"] == guid
    by_id = stored(db)[1].id
    assert client.delete(f"/api/v1/posts/{by_id}", headers=auth(token)).status_code == 200
    assert client.delete(f"/api/v1/posts/{by_id}", headers=auth(token)).status_code == 200
    listing = client.get("/api/v1/posts", headers=auth(token)).json
    assert listing is not None and listing["items"] == []
    assert client.delete("/api/v1/posts/unknown", headers=auth(token)).status_code == 404
    assert client.delete("/api/v1/posts/cms-2").status_code == 401
    # Pushing the article again brings it back.
    again = client.post("/api/v1/posts", json=article(2), headers=auth(token))
    assert again.status_code == 200 and again.json is not None
    assert again.json["posts"][0]["status"] == "updated"
    assert db.scalar(select(func.count()).select_from(Post).where(Post.retracted_at.is_(None))) == 1


def test_the_api_size_limit_is_a_setting(settings: Settings, token: str) -> None:

    app = create_app(replace(settings, posts_api_max_bytes=2000))
    client = app.test_client()
    response = client.post(
        "/api/v1/posts", json=article(content_html="x" * 3000), headers=auth(token)
    )
    assert response.status_code == 413


@pytest.fixture
def api(app: Flask, db: Session) -> FlaskClient:
    """A test client with a valid bearer token."""
    _, token = create_token(db, "review", ["posts:write", "posts:read"])
    db.commit()
    client = app.test_client()
    client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return client


def test_post_published_beyond_utc_range_is_a_400(api: FlaskClient, db: Session) -> None:
    before = row_counts(db)
    post = {
        "guid": "p-1",
        "url": "https://news.example.com/a",
        "title": "Headline",
        "published_at": "0001-01-01T00:00:00+14:00",
    }
    response = api.post("/api/v1/posts", json=post)
    assert response.status_code == 400
    assert response.get_json()["field"] == "published_at"
    assert row_counts(db) == before


def test_posts_limit_and_key_with_non_ascii_digits(api: FlaskClient) -> None:
    response = api.get("/api/v1/posts?limit=²")
    assert response.status_code == 400
    assert response.get_json()["field"] == "limit"
    assert api.delete("/api/v1/posts/²").status_code == 404


@pytest.mark.parametrize(
    "markup",
    [
        "<b>" * 20_000 + "</x>" * 20_000,
        "<a b='" * 20_000,
        "<![CDATA[" * 5_000 + "<!--" * 5_000,
        "Lone \ud800 surrogate <b>bold",
    ],
)
def test_hostile_markup_in_a_title_is_cleaned_never_a_500(
    client: FlaskClient, token: str, db: Session, markup: str
) -> None:
    # As long as the API accepts: 10,000 characters of title, 100,000 of summary.
    title, summary = "Headline " + markup[:9_000], markup[:99_000] + "<p>Summary</p>"
    pushed = article(title=title, summary=summary, content_html=summary)
    response = client.post("/api/v1/posts", json=pushed, headers=auth(token))
    assert response.status_code == 201, response.get_data(as_text=True)[:500]
    (post,) = stored(db)
    assert post.title.startswith("Headline") and "<b" not in post.title
    assert len(post.title) <= 1000 and len(post.summary) <= 500
