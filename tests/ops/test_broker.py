"""Queue depths as Celery leaves them in a real Redis and a real RabbitMQ, and a broker that is
down answered at once."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import pytest
from celery import Celery

from newsletter import create_app
from newsletter.ops import broker
from newsletter.settings import Settings
from newsletter.store.db import dispose_engines
from tests.support.redis_server import redis_server
from tests.support.services import rabbitmq_vhost
from worker.app import QUEUES


@contextmanager
def celery_on(settings: Settings, url: str) -> Iterator[tuple[Celery, dict[str, Any]]]:
    """The app's Celery over broker ``url`` and its transport options."""
    app = create_app(replace(settings, broker_url=url))
    celery: Celery = app.extensions["celery"]
    try:
        yield celery, dict(celery.conf.broker_transport_options or {})
    finally:
        dispose_engines()


def enqueue_some(celery: Celery) -> None:
    """Two housekeeping tasks and one transactional, as the app's routes send them."""
    celery.send_task("newsletter.tick")
    celery.send_task("newsletter.purge_pending")
    celery.send_task("newsletter.send_confirmation", args=[1])


def test_depths_in_redis_and_a_stopped_redis(settings: Settings) -> None:
    with redis_server() as server, celery_on(settings, server.url(0)) as (celery, options):
        assert broker.queue_depths(server.url(0), options, QUEUES) == {
            "transactional": 0,
            "bulk": 0,
            "housekeeping": 0,
        }
        enqueue_some(celery)
        assert broker.queue_depths(server.url(0), options, QUEUES) == {
            "transactional": 1,
            "bulk": 0,
            "housekeeping": 2,
        }
        assert broker.reachable(server.url(0), options)
        server.kill()
        assert not broker.reachable(server.url(0), options)
        with pytest.raises(broker.UNREACHABLE):
            broker.queue_depths(server.url(0), options, QUEUES)


def test_depths_in_rabbitmq(settings: Settings) -> None:
    with rabbitmq_vhost() as url, celery_on(settings, url) as (celery, options):
        assert broker.reachable(url, options)
        enqueue_some(celery)
        # bulk, which nothing was sent to, holds nothing (declared yet or not).
        assert broker.queue_depths(url, options, QUEUES) == {
            "transactional": 1,
            "bulk": 0,
            "housekeeping": 2,
        }
