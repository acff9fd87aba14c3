"""The port through which the core asks for background work: fan-outs and batches of a send.

The app and the Celery factory provide the implementation (worker.tasks.CeleryQueue); tests may
run the work inline. The core never imports ``worker``.
"""

from __future__ import annotations

from typing import Protocol


class TaskQueue(Protocol):
    """Where the engine enqueues work (Celery in production; tests may run it inline)."""

    def fan_out(self, issue_id: int) -> None:
        """Enqueue the fan-out (or, once it is done, a pump) of an issue."""
        ...

    def send_batch(self, issue_id: int, delivery_ids: list[int]) -> None:
        """Enqueue one batch of deliveries to send."""
        ...
