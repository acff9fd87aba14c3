"""`newsletter dev`'s demo posts show images the app itself serves, not a broken link."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.ops.demo import DEMO_FEED
from newsletter.ops.devserver import demo_images, ingest_demo_feed, server_url
from newsletter.settings import Settings
from newsletter.store.models import Post

STATIC = Path(__file__).resolve().parents[2] / "templates" / "static"
IMAGE_URL = re.compile(r'<media:content url="([^"]+)"')


def test_every_demo_item_has_a_small_image_shipped_with_the_project() -> None:
    paths = IMAGE_URL.findall(DEMO_FEED.read_text())
    assert len(paths) == DEMO_FEED.read_text().count("<item>") == 4
    for path in paths:
        assert path.startswith("/static/demo/"), path
        image = STATIC / path.removeprefix("/static/")
        data = image.read_bytes()
        assert data[:3] == b"\xff\xd8\xff", f"{path} is not a JPEG"
        assert len(data) < 40 * 1024, f"{path} is {len(data)} bytes"


def test_the_app_serves_the_demo_images(client: FlaskClient) -> None:
    for path in IMAGE_URL.findall(DEMO_FEED.read_text()):
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.mimetype == "image/jpeg"
        response.close()


def test_demo_images_point_at_the_dev_server() -> None:
    rss = demo_images(DEMO_FEED.read_text(), "http://127.0.0.1:5123/")
    assert IMAGE_URL.findall(rss) == [
        f"http://127.0.0.1:5123/static/demo/{name}.jpg"
        for name in ("border", "globe", "capitol", "offer")
    ]


def test_the_dev_server_url_follows_host_and_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NEWSLETTER_BASE_URL", raising=False)
    assert server_url("0.0.0.0", 5001) == "http://127.0.0.1:5001"
    monkeypatch.setenv("NEWSLETTER_BASE_URL", "https://dev.example.com")
    assert server_url("0.0.0.0", 5001) == "https://dev.example.com"


def test_ingested_demo_posts_carry_the_served_images(settings: Settings, db: Session) -> None:
    ingest_demo_feed(settings, "http://127.0.0.1:5123")
    images = {post.title[:20]: post.image_url for post in db.scalars(select(Post))}
    assert len(images) == 4
    assert all(url.startswith("http://127.0.0.1:5123/static/demo/") for url in images.values())
