"""Beat's one periodic job: fire due schedules, start due issues, keep every send moving.

A firing is unique per schedule and due time and every step is idempotent, so two beats, or a
restarted one, never send twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from newsletter.delivery.recovery import maintain
from newsletter.issues.lifecycle import start_due
from newsletter.issues.queue import TaskQueue
from newsletter.issues.schedules import fire_due
from newsletter.settings import Settings
from newsletter.store.db import get_sessionmaker, utcnow


@dataclass
class TickReport:
    """What one tick did (logged, and returned for tests)."""

    fired: list[int] = field(default_factory=list)  # issue ids created by firings
    started: list[int] = field(default_factory=list)  # issues that began sending
    maintenance: dict[str, int] = field(default_factory=dict)


def tick(settings: Settings, queue: TaskQueue, now: datetime | None = None) -> TickReport:
    """Beat's periodic job: fire due schedules, start due issues, keep sends moving."""
    now = now or utcnow()
    report = TickReport()
    with get_sessionmaker(settings.database_url)() as session:
        report.fired = fire_due(session, settings, now)
        report.started = start_due(session, settings, queue, now)
    report.maintenance = maintain(settings, queue, now)
    return report
