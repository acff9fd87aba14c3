"""Is this process ready to serve: the database, the Celery broker and (when set) Redis answer?

Each check answers ``"ok"`` or ``"unreachable"``, nothing more: a readiness endpoint is public,
so the reason (which may name a host or a user) goes to the log only, by its exception class.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import redis
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from newsletter.ops import broker

OK = "ok"
UNREACHABLE = "unreachable"
TIMEOUT_SECONDS = broker.TIMEOUT_SECONDS
log = logging.getLogger(__name__)


def check_database(session: Session) -> str:
    """``SELECT 1`` through the session."""
    try:
        session.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        session.rollback()
        log.warning("readiness: database unreachable: %s", exc.__class__.__name__)
        return UNREACHABLE
    return OK


def check_broker(url: str, transport_options: Mapping[str, Any]) -> str:
    """A connection to the Celery broker, one attempt with a short timeout."""
    if broker.reachable(url, transport_options):
        return OK
    log.warning("readiness: broker unreachable")
    return UNREACHABLE


def check_redis(url: str) -> str:
    """A PING to the Redis of rate limits and replay guards, with a short timeout."""
    client = redis.Redis.from_url(
        url, socket_connect_timeout=TIMEOUT_SECONDS, socket_timeout=TIMEOUT_SECONDS
    )
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        log.warning("readiness: redis unreachable: %s", exc.__class__.__name__)
        return UNREACHABLE
    finally:
        client.close()
    return OK


def readiness(
    session: Session, broker_url: str, transport_options: Mapping[str, Any], redis_url: str
) -> dict[str, str]:
    """Every check by name: ``database``, ``broker`` and, when ``redis_url`` is set, ``redis``."""
    checks = {
        "database": check_database(session),
        "broker": check_broker(broker_url, transport_options),
    }
    if redis_url:
        checks["redis"] = check_redis(redis_url)
    return checks
