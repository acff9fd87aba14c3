"""The port through which new and retried webhook deliveries reach a worker, after commit.

:func:`newsletter.hooks.events.emit` writes its outbox rows in the caller's transaction and
notes their ids on the session; once that transaction commits, the listener installed by the
app factory (:func:`enqueue_after_commit`) hands them to the queue (``worker.tasks``'s
``CeleryWebhookQueue``). A rolled-back change thus sends nothing, and a committed one is never
lost: a row whose message never reached the broker is found by the tick's sweep
(:func:`newsletter.hooks.sending.sweep`). The core never imports ``worker``.
"""

from __future__ import annotations

import logging
from typing import Protocol

from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

# Keys in Session.info: the queue (set for every session of a factory) and the ids to enqueue.
QUEUE_KEY = "newsletter.webhook_queue"
PENDING_KEY = "newsletter.webhook_pending"


class WebhookQueue(Protocol):
    """Where deliveries are enqueued (Celery in production; tests may run them inline)."""

    def deliver(self, delivery_id: int, countdown: float = 0) -> None:
        """Enqueue one attempt at a delivery, ``countdown`` seconds from now."""
        ...


def note_pending(session: Session, delivery_ids: list[int]) -> None:
    """Remember deliveries to enqueue once the session's transaction commits."""
    session.info.setdefault(PENDING_KEY, []).extend(delivery_ids)


def enqueue_after_commit(factory: sessionmaker[Session], queue: WebhookQueue) -> None:
    """Have every session of ``factory`` enqueue the deliveries it wrote, after each commit."""
    info = dict(factory.kw.get("info") or {})
    info[QUEUE_KEY] = queue
    factory.configure(info=info)
    if not event.contains(factory, "after_commit", _enqueue_pending):
        event.listen(factory, "after_commit", _enqueue_pending)
        event.listen(factory, "after_rollback", _forget_pending)


def _enqueue_pending(session: Session) -> None:
    """After a commit: enqueue what it wrote. A broker that is away fails nothing: the change
    is committed, and the sweep enqueues the rows later."""
    ids: list[int] = session.info.pop(PENDING_KEY, [])
    queue: WebhookQueue | None = session.info.get(QUEUE_KEY)
    if not ids or queue is None:
        return
    try:
        for delivery_id in ids:
            queue.deliver(delivery_id)
    except Exception as exc:  # a broker error must not fail a request that already committed
        log.warning(
            "webhook deliveries %s not enqueued (%s); the tick's sweep will send them",
            ids,
            type(exc).__name__,
        )


def _forget_pending(session: Session) -> None:
    """After a rollback the rows are gone: nothing to enqueue."""
    session.info.pop(PENDING_KEY, None)
