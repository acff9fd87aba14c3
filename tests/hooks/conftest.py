"""Fixtures of the webhook tests: a spec receiver on 127.0.0.1 and settings that may reach it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import pytest
from sqlalchemy.orm import Session

from newsletter.hooks import sending
from newsletter.hooks.endpoints import register
from newsletter.hooks.queue import enqueue_after_commit
from newsletter.settings import Settings
from newsletter.store.db import get_sessionmaker
from newsletter.store.models import WebhookEndpoint
from tests.support.webhook_receiver import WebhookReceiver


@dataclass
class InlineWebhookQueue:
    """The hooks' WebhookQueue run in this process: ``drain()`` makes the attempts it was given
    (countdowns are the broker's business, so each is made at once)."""

    settings: Settings
    enqueued: list[tuple[int, float]] = field(default_factory=list)

    def deliver(self, delivery_id: int, countdown: float = 0) -> None:
        """Note an attempt to make."""
        self.enqueued.append((delivery_id, countdown))

    def drain(self, max_rounds: int = 20) -> list[sending.Outcome]:
        """Make every enqueued attempt, and those they enqueue, in order."""
        outcomes = []
        for _ in range(max_rounds):
            if not self.enqueued:
                return outcomes
            delivery_id, _countdown = self.enqueued.pop(0)
            outcomes.append(sending.deliver(self.settings, delivery_id, self))
        raise AssertionError(f"still enqueued after {max_rounds} attempts: {self.enqueued}")


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    """A Standard Webhooks receiver on a free loopback port."""
    server = WebhookReceiver().start()
    yield server
    server.stop()


@pytest.fixture
def hook_settings(settings: Settings) -> Settings:
    """Webhooks allowed to 127.0.0.1 (where the receiver is), retried at once, 3 attempts."""
    return replace(
        settings,
        webhook_allow_private_networks=True,
        webhook_retry_base_seconds=0,
        webhook_max_attempts=3,
        webhook_timeout_seconds=5,
    )


@pytest.fixture(autouse=True)
def queue(hook_settings: Settings) -> InlineWebhookQueue:
    """The inline queue, installed for every session of the test database as the app factory
    does, so before any session is opened (autouse: a session takes it when it is created)."""
    inline = InlineWebhookQueue(hook_settings)
    enqueue_after_commit(get_sessionmaker(hook_settings.database_url), inline)
    return inline


@pytest.fixture
def endpoint(
    db: Session, hook_settings: Settings, receiver: WebhookReceiver, queue: InlineWebhookQueue
) -> WebhookEndpoint:
    """An endpoint for every event at the receiver, which knows its secret."""
    row = register(db, hook_settings, receiver.url, description="CRM")
    db.commit()
    receiver.secret = row.secret
    return row
