"""The Celery side: every task has time limits, one task per feed, a soft limit is recorded."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import FrameType

import pytest
from celery.exceptions import SoftTimeLimitExceeded
from flask import Flask
from sqlalchemy.orm import Session

from newsletter import create_app
from newsletter.content.feeds import add_feed
from newsletter.settings import Settings
from newsletter.store.db import dispose_engines
from tests.support.feed_server import FeedServer, Route
from worker.app import QUEUES
from worker.tasks import FEED_SOFT_TIME_LIMIT, ingest_feed, ingest_feeds

FEED = (Path(__file__).parent / "data" / "feeds" / "atom.xml").read_bytes()


@pytest.fixture
def server() -> Iterator[FeedServer]:
    srv = FeedServer().start()
    yield srv
    srv.stop()


@pytest.fixture
def local_app(settings: Settings) -> Iterator[Flask]:
    """The app, allowed to fetch feeds from the test server on 127.0.0.1."""
    application = create_app(replace(settings, feed_allow_private_networks=True))
    yield application
    dispose_engines()


def test_every_task_has_a_soft_and_a_hard_time_limit(app: Flask) -> None:
    celery = app.extensions["celery"]
    ours = {name: task for name, task in celery.tasks.items() if name.startswith("newsletter.")}
    assert {"newsletter.ingest_feeds", "newsletter.ingest_feed", "newsletter.send_batch"} <= set(
        ours
    )
    for name, task in ours.items():
        soft = task.soft_time_limit or celery.conf.task_soft_time_limit
        hard = task.time_limit or celery.conf.task_time_limit
        assert soft and hard, f"{name} has no time limit"
        assert 0 < soft < hard, f"{name}: the soft limit must come before the hard one"


def test_the_dispatcher_enqueues_one_ingest_task_per_due_feed(
    local_app: Flask, settings: Settings, db: Session
) -> None:
    ids = [add_feed(db, f"https://news.example.com/feed/{n}").id for n in range(3)]
    db.commit()
    with local_app.app_context():
        assert ingest_feeds.run() == {"feeds": 3}
    # The messages as the embedded broker holds them, for a worker to take one at a time.
    messages = [json.loads(path.read_text()) for path in settings.broker_dir.glob("*.msg")]
    tasks = sorted((m["headers"]["task"], m["headers"]["argsrepr"]) for m in messages)
    assert tasks == [("newsletter.ingest_feed", f"({feed_id},)") for feed_id in sorted(ids)]


def test_a_soft_time_limit_while_fetching_is_recorded_on_the_feed(
    local_app: Flask, server: FeedServer, db: Session
) -> None:
    # Celery's pool delivers the soft limit as a signal whose handler raises in the task; the
    # same happens here, with SIGALRM, while the fetch waits for a slow server.
    server.routes["/feed"] = Route(FEED, delay=2)
    feed = add_feed(db, server.url("/feed"))
    db.commit()

    def soft_limit(signum: int, frame: FrameType | None) -> None:
        raise SoftTimeLimitExceeded()

    previous = signal.signal(signal.SIGALRM, soft_limit)
    signal.setitimer(signal.ITIMER_REAL, 0.3)
    try:
        with local_app.app_context():
            outcome = ingest_feed.run(feed.id)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert outcome == {"feed": feed.id, "ok": False, "created": 0, "updated": 0}
    db.expire_all()
    assert feed.error_count == 1
    assert feed.last_error == f"stopped: ingesting took longer than {FEED_SOFT_TIME_LIMIT} seconds"
    assert feed.next_fetch_at is not None and feed.last_fetched_at is not None
    assert feed.next_fetch_at > feed.last_fetched_at  # backed off like any failure


def test_every_task_goes_to_one_of_the_three_queues(app: Flask, settings: Settings) -> None:
    celery = app.extensions["celery"]
    ours = {name for name in celery.tasks if name.startswith("newsletter.")}
    routed = {name: route["queue"] for name, route in celery.conf.task_routes.items()}
    assert set(routed) == ours  # no task of ours left to the default queue by accident
    assert set(routed.values()) == set(QUEUES)
    assert routed["newsletter.send_confirmation"] == "transactional"
    assert routed["newsletter.process_signup"] == "transactional"
    assert routed["newsletter.send_batch"] == routed["newsletter.fan_out"] == "bulk"
    assert routed["newsletter.tick"] == "housekeeping"
    # The messages land on their queue's own list in the broker.
    with app.app_context():
        ingest_feeds.run()
        celery.send_task("newsletter.send_confirmation", args=[1])
    messages = [json.loads(p.read_text()) for p in settings.broker_dir.glob("*.msg")]
    queues = {
        m["headers"]["task"]: m["properties"]["delivery_info"]["routing_key"] for m in messages
    }
    assert queues == {"newsletter.send_confirmation": "transactional"}
