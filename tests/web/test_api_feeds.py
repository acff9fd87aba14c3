"""/api/v1/feeds: add, list, show and remove the feeds posts come from, over the real app."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsletter.store.models import Feed
from tests.web.test_api import bearer

FEED = "https://news.example.com/feed.xml"


@pytest.fixture
def headers(db: Session) -> dict[str, str]:
    """A token allowed to read and write feeds."""
    return bearer(db, "feeds:read", "feeds:write")


def test_a_feed_is_added_listed_shown_and_removed(
    client: FlaskClient, db: Session, headers: dict[str, str]
) -> None:
    added = client.post("/api/v1/feeds", json={"url": FEED}, headers=headers)
    assert added.status_code == 201, added.get_json()
    feed = added.get_json()["feed"]
    assert (feed["url"], feed["enabled"], feed["error_count"]) == (FEED, True, 0)

    again = client.post("/api/v1/feeds", json={"url": FEED}, headers=headers)
    assert again.status_code == 201 and again.get_json()["feed"]["id"] == feed["id"]
    second = client.post("/api/v1/feeds", json={"url": FEED + "?b"}, headers=headers)
    listed = client.get("/api/v1/feeds?limit=1", headers=headers).get_json()
    assert [f["id"] for f in listed["items"]] == [feed["id"]] and listed["next"]
    rest = client.get(f"/api/v1/feeds?limit=1&after={listed['next']}", headers=headers)
    assert [f["id"] for f in rest.get_json()["items"]] == [second.get_json()["feed"]["id"]]
    assert rest.get_json()["next"] is None

    shown = client.get(f"/api/v1/feeds/{feed['id']}", headers=headers)
    assert shown.status_code == 200 and shown.get_json()["feed"]["url"] == FEED
    gone = client.delete(f"/api/v1/feeds/{feed['id']}", headers=headers)
    assert gone.get_json() == {"id": feed["id"], "deleted": True}
    assert client.get(f"/api/v1/feeds/{feed['id']}", headers=headers).status_code == 404
    assert db.scalar(select(func.count(Feed.id))) == 1


@pytest.mark.parametrize(
    "url",
    [
        "/etc/passwd",
        "file:///etc/passwd",
        "ftp://news.example.com/feed",
        "not a url",
        "",
        "\x00x",
        "https://a\x00b",
    ],
)
def test_only_http_urls_are_taken_so_a_token_cannot_read_the_servers_files(
    client: FlaskClient, db: Session, headers: dict[str, str], url: str, tmp_path: Path
) -> None:
    answer = client.post("/api/v1/feeds", json={"url": url}, headers=headers)
    assert answer.status_code == 400, answer.get_json()
    assert answer.content_type == "application/problem+json"
    assert db.scalar(select(func.count(Feed.id))) == 0


def test_feeds_need_their_scopes(client: FlaskClient, db: Session) -> None:
    reader = bearer(db, "feeds:read")
    assert client.get("/api/v1/feeds", headers=reader).status_code == 200
    refused = client.post("/api/v1/feeds", json={"url": FEED}, headers=reader)
    assert refused.status_code == 403 and refused.get_json()["scope"] == "feeds:write"
