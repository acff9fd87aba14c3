"""Feeds through a real worker: beat's dispatcher enqueues one task per feed, each ingests its own.

Real Redis, PostgreSQL, ``newsletter worker`` (prefork, with the task time limits) and a feed
server on 127.0.0.1 (allowed here by NEWSLETTER_FEED_ALLOW_PRIVATE_NETWORKS).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from newsletter import create_app
from newsletter.settings import Settings
from newsletter.store.db import dispose_engines, get_sessionmaker
from newsletter.store.models import Feed, Post
from tests.support.feed_server import FeedServer, Route
from tests.support.services import fresh_postgres_database
from tests.support.worker import (
    WorkerProcess,
    redis_test_db,
    require_postgres,
    run_newsletter,
    service_env,
)
from worker.tasks import ingest_feeds

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DATA = Path(__file__).parents[1] / "data" / "feeds"


@pytest.fixture
def server() -> Iterator[FeedServer]:
    srv = FeedServer().start()
    yield srv
    srv.stop()


def test_one_task_per_feed_in_a_real_worker(tmp_path: Path, server: FeedServer) -> None:
    require_postgres()
    server.routes["/rss"] = Route((DATA / "sample-feed.xml").read_bytes())
    server.routes["/atom"] = Route((DATA / "atom.xml").read_bytes())
    server.routes["/down"] = Route(b"", status=503)
    with redis_test_db() as broker_url, fresh_postgres_database() as database_url:
        env = service_env(
            tmp_path,
            database_url=database_url,
            broker_url=broker_url,
            smtp_url=f"capture://{tmp_path / 'mail'}",
            feed_allow_private_networks="true",
        )
        run_newsletter(["db", "upgrade"], env)
        for path in ("/rss", "/atom", "/down"):
            run_newsletter(["feeds", "add", server.url(path)], env)
        settings = Settings.from_env(env)
        create_app(settings)  # its Celery app (this Redis) becomes the default
        try:
            ingest_feeds.delay()
            with WorkerProcess(env, tmp_path / "worker.log") as worker:
                worker.wait_until(lambda: _fetched(database_url) == 3, 60, "three feeds fetched")
                log = worker.log_text()
            with get_sessionmaker(database_url)() as db:
                assert db.scalar(select(func.count()).select_from(Post)) == 6
                errors = {f.url: f.last_error for f in db.scalars(select(Feed))}
        finally:
            dispose_engines()
    assert "HTTP 503" in errors[server.url("/down")]
    assert log.count("Task newsletter.ingest_feed[") >= 3, log  # one task each
    assert "Task newsletter.ingest_feeds[" in log


def _fetched(database_url: str) -> int:
    """How many feeds have been fetched (successfully or not)."""
    with get_sessionmaker(database_url)() as db:
        return (
            db.scalar(
                select(func.count()).select_from(Feed).where(Feed.last_fetched_at.is_not(None))
            )
            or 0
        )
