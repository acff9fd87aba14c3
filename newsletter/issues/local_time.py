"""Sending at each reader's local time: when a reader's own zone reaches the issue's hour."""

from __future__ import annotations

from datetime import UTC, datetime
from datetime import time as clock_time
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# The first zone on Earth to reach any wall-clock time (UTC+14; the POSIX sign is inverted).
EARLIEST_ZONE = ZoneInfo("Etc/GMT-14")


@lru_cache(maxsize=1024)
def _zone(name: str) -> ZoneInfo | None:
    """A time zone by IANA name, or None when unknown."""
    try:
        return ZoneInfo(name) if name else None
    except (ZoneInfoNotFoundError, ValueError):
        return None


def local_due_at(send_at: datetime, local_time: str, zone_name: str, fallback: str) -> datetime:
    """When a reader in ``zone_name`` should get an issue sent at ``local_time`` on its day.

    The issue's day is the date of ``send_at`` in the earliest zone (UTC+14), so one issue spans
    about 26 hours of cohorts, from UTC+14 to UTC-12. Unknown zones use ``fallback``.
    """
    day = send_at.astimezone(EARLIEST_ZONE).date()
    hours, minutes = (int(part) for part in local_time.split(":", 1))
    zone = _zone(zone_name) or _zone(fallback) or UTC
    return datetime.combine(day, clock_time(hours, minutes), tzinfo=zone).astimezone(UTC)
