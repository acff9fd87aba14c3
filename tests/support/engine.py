"""Fixtures for the dispatch engine's tests: every test on SQLite and on PostgreSQL, real SMTP
(the aiosmtpd sink), the engine's tasks run inline.

A test module redefines conftest's fixtures for itself by importing them::

    from tests.support.engine import app, db, queue, settings  # noqa: F401 (fixtures)

``settings`` then parametrises the module's tests over both databases, and conftest's ``app``,
``client`` and ``db`` follow it. The engine's tests live in tests/delivery/ and
tests/issues/test_lifecycle.py; tests/integration/test_dispatch.py runs the same engine with
Celery workers.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from flask import Flask
from sqlalchemy.orm import Session

from newsletter.issues import lifecycle
from newsletter.issues.status import status_counts
from newsletter.mail.transport import close_transports
from newsletter.settings import Settings
from newsletter.store.models import Issue
from tests.support import dispatching as seed
from tests.support.services import migrated_postgres_database
from tests.support.smtp import SMTPSink


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(
    request: pytest.FixtureRequest, settings: Settings, smtp_sink: SMTPSink
) -> Iterator[Settings]:
    """conftest's settings on SQLite or PostgreSQL (their hot paths differ), delivering to the
    sink: small batches, instant retries, auto-pause out of the way unless a test sets it."""
    engine = replace(
        settings,
        smtp_url=smtp_sink.url,
        smtp_timeout=5.0,
        batch_size=3,
        send_inflight_batches=2,
        send_retry_base_seconds=0.01,
        send_retry_max_seconds=0.02,
        autopause_min_attempts=10_000,
    )
    if request.param == "sqlite":
        yield engine
        return
    with migrated_postgres_database() as url:
        yield replace(engine, database_url=url)


@pytest.fixture
def app(app: Flask) -> Iterator[Flask]:
    """conftest's app with an app context pushed (its Jinja environment renders the mails)."""
    with app.app_context():
        yield app
    close_transports()


@pytest.fixture
def db(app: Flask, db: Session) -> Session:
    """conftest's session on the test's database, opened after the app so that it is closed
    before the app's teardown disposes of the engines."""
    return db


@pytest.fixture
def queue(settings: Settings, app: Flask) -> seed.InlineQueue:
    """Tasks run inline."""
    return seed.InlineQueue(settings)


def statuses(db: Session, issue_id: int) -> dict[str, int]:
    """Deliveries of an issue by status."""
    db.expire_all()
    return status_counts(db, issue_id)


def recipients(sink: SMTPSink) -> list[str]:
    """Every RCPT TO the sink accepted, in order."""
    return [r for m in sink.messages for r in m.rcpt_tos]


def start_digest(
    db: Session, settings: Settings, queue: seed.InlineQueue, slug: str = "daily"
) -> Issue:
    """Plan and start a digest of ``slug``; tasks are queued, not run."""
    newsletter = lifecycle.find_newsletter(db, slug)
    issue = lifecycle.create_digest(db, settings, newsletter)
    db.commit()
    return lifecycle.send(db, settings, issue.id, queue)
