"""Periodic mailings: cron schedules stored in the database, fired by beat's one periodic tick.

* Schedules are rows, read at every tick: create, edit, enable or disable them at runtime and the
  next tick follows, with nothing to restart.
* A firing is one row per (schedule, due time) under a unique key: the tick INSERTs it and, on
  IntegrityError, knows another tick (a second beat, a restarted one) fired it already. So each
  due time produces at most one issue, however many ticks run.
* Missed firings (everything was down) fire once, for the latest missed slot only.
* Times are computed by croniter in the schedule's zone (zoneinfo), so "08:00 Europe/Paris" stays
  08:00 across DST; a wall time that occurs twice when clocks go back fires once.
* ``reader_local_time``: the cron's time is each reader's own local time. The issue is created
  when the first zone on Earth (UTC+14) reaches it; each delivery gets its reader's ``due_at`` and
  the tick's pump sends each cohort as its zone reaches the hour (one issue spans ~26 hours).
* ``prepare_minutes`` (the editor's veto): the issue is prepared that long before it goes out, as
  a scheduled issue an editor can preview, edit or hold; unless held it starts on time.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from newsletter.issues import lifecycle
from newsletter.issues.local_time import EARLIEST_ZONE
from newsletter.settings import Settings
from newsletter.store.db import utcnow
from newsletter.store.models import (
    Frequency,
    Newsletter,
    NewsletterKind,
    Schedule,
    ScheduleFiring,
)

log = logging.getLogger(__name__)

MAX_PREPARE_MINUTES = 7 * 24 * 60
MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}


class ScheduleError(ValueError):
    """Bad schedule input; the message says what to fix."""


class ScheduleNotFound(LookupError):
    """No schedule with that id."""


# --- Validation ----------------------------------------------------------------------------------


def validate_cron(expression: str) -> str:
    """A five-field cron expression (or @daily-style macro), normalised; else ScheduleError."""
    expr = " ".join(expression.split())
    fields = expr.split(" ")
    if not expr or (len(fields) != 5 and expr.lower() not in MACROS):
        raise ScheduleError(
            f"{expression!r} is not a cron expression: use five fields "
            '"minute hour day-of-month month day-of-week", e.g. "0 8 * * *" or "30 7 * * mon".'
        )
    if not croniter.is_valid(expr):
        raise ScheduleError(f"{expression!r} is not a valid cron expression: {_bad_field(fields)}")
    return expr


# The five fields of a cron expression and what each accepts, for error messages.
CRON_FIELDS = (
    ("minute", "minutes run 0-59"),
    ("hour", "hours run 0-23"),
    ("day-of-month", "days of the month run 1-31"),
    ("month", "months run 1-12 or jan-dec"),
    ("day-of-week", "days of the week run 0-7 or sun-sat, 0 and 7 both Sunday"),
)


def _bad_field(fields: list[str]) -> str:
    """Which field of an invalid five-field expression is wrong, and what it accepts."""
    for i, (name, accepted) in enumerate(CRON_FIELDS):
        alone = " ".join(value if j == i else "*" for j, value in enumerate(fields))
        if not croniter.is_valid(alone):
            return (
                f"the {name} field {fields[i]!r} is wrong: {accepted}; lists (1,15), "
                "ranges (8-18) and steps (*/2) work too."
            )
    return "its fields do not combine into a schedule."


def validate_timezone(name: str) -> str:
    """An IANA time zone name such as Europe/Paris; else ScheduleError."""
    name = name.strip()
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(
            f"Unknown time zone {name!r}: use an IANA name such as Europe/Paris or UTC."
        ) from None
    return name


def validate_prepare_minutes(value: int) -> int:
    """Minutes of lead for the editor's veto, 0 to a week."""
    if not 0 <= value <= MAX_PREPARE_MINUTES:
        raise ScheduleError(f"prepare minutes must be between 0 and {MAX_PREPARE_MINUTES}.")
    return value


# --- CRUD ----------------------------------------------------------------------------------------


def create_schedule(
    session: Session,
    *,
    newsletter: str,
    cron: str,
    timezone: str = "UTC",
    frequency: str | None = None,
    reader_local_time: bool = False,
    prepare_minutes: int = 0,
    name: str = "",
    enabled: bool = True,
    now: datetime | None = None,
) -> Schedule:
    """Add a schedule for a digest newsletter (flushed; the caller commits)."""
    try:
        target = lifecycle.find_newsletter(session, newsletter)
    except lifecycle.IssueNotFound as exc:
        raise ScheduleError(str(exc)) from None
    if NewsletterKind(target.kind) is not NewsletterKind.DIGEST:
        raise ScheduleError(
            f"{target.slug} is a campaign newsletter; campaigns are written and sent by an "
            "editor, not scheduled."
        )
    try:
        cohort = lifecycle.parse_frequency(frequency)
    except lifecycle.InvalidRequest as exc:
        raise ScheduleError(str(exc)) from None
    schedule = Schedule(
        newsletter_id=target.id,
        name=" ".join(name.split())[:200],
        cron=validate_cron(cron),
        timezone=validate_timezone(timezone),
        frequency=cohort or Frequency(target.default_frequency),
        reader_local_time=reader_local_time,
        prepare_minutes=validate_prepare_minutes(prepare_minutes),
        enabled=enabled,
        checked_until=now or utcnow(),  # no retroactive firing of slots before creation
    )
    session.add(schedule)
    session.flush()
    return schedule


def get_schedule(session: Session, schedule_id: int) -> Schedule:
    """The schedule with that id."""
    schedule = session.get(Schedule, schedule_id, populate_existing=True)
    if schedule is None:
        raise ScheduleNotFound(f"There is no schedule {schedule_id}.")
    return schedule


def list_schedules(
    session: Session, *, after_id: int | None = None, limit: int | None = None
) -> list[Schedule]:
    """Every schedule, oldest first (those after ``after_id``, at most ``limit`` when given)."""
    query = select(Schedule).order_by(Schedule.id).limit(limit)
    if after_id is not None:
        query = query.where(Schedule.id > after_id)
    return list(session.scalars(query))


TIMING_FIELDS = {"cron", "timezone", "reader_local_time", "prepare_minutes"}


def update_schedule(
    session: Session, schedule_id: int, now: datetime | None = None, **changes: Any
) -> Schedule:
    """Change fields of a schedule; a new timing or re-enabling never fires past slots."""
    schedule = get_schedule(session, schedule_id)
    unknown = set(changes) - TIMING_FIELDS - {"frequency", "name", "enabled"}
    if unknown:
        raise ScheduleError(f"Unknown schedule fields: {', '.join(sorted(unknown))}.")
    # Only the frequency has a "none" (the newsletter's default); null elsewhere is a mistake.
    empty = sorted(key for key, value in changes.items() if value is None and key != "frequency")
    if empty:
        raise ScheduleError(f"These schedule fields need a value: {', '.join(empty)}.")
    if "cron" in changes:
        changes["cron"] = validate_cron(str(changes["cron"]))
    if "timezone" in changes:
        changes["timezone"] = validate_timezone(str(changes["timezone"]))
    if "prepare_minutes" in changes:
        changes["prepare_minutes"] = validate_prepare_minutes(int(changes["prepare_minutes"]))
    if "frequency" in changes:
        try:
            cohort = lifecycle.parse_frequency(changes["frequency"])
        except lifecycle.InvalidRequest as exc:
            raise ScheduleError(str(exc)) from None
        newsletter = session.get(Newsletter, schedule.newsletter_id)
        default = newsletter.default_frequency if newsletter is not None else Frequency.DAILY
        changes["frequency"] = cohort or Frequency(default)
    if "name" in changes:
        changes["name"] = " ".join(str(changes["name"]).split())[:200]
    retime = any(
        key in TIMING_FIELDS and changes[key] != getattr(schedule, key) for key in changes
    ) or (changes.get("enabled") is True and not schedule.enabled)
    for key, value in changes.items():
        setattr(schedule, key, value)
    if retime:
        schedule.checked_until = now or utcnow()
    session.flush()
    return schedule


def delete_schedule(session: Session, schedule_id: int) -> None:
    """Remove a schedule (its issues stay; their schedule link is cleared)."""
    session.delete(get_schedule(session, schedule_id))
    session.flush()


# --- Time ----------------------------------------------------------------------------------------


def zone_of(schedule: Schedule) -> ZoneInfo:
    """The zone the cron is read in: the schedule's, or UTC+14 for reader-local sends."""
    if schedule.reader_local_time:
        return EARLIEST_ZONE
    return ZoneInfo(schedule.timezone or "UTC")


def _fixed_hour(cron: str) -> bool:
    """True when the cron names its hours (a repeated wall time then fires only once)."""
    fields = cron.split()
    return (len(fields) == 5 and "*" not in fields[1]) or cron.lower() in MACROS - {"@hourly"}


def _is_repeat(slot: datetime, zone: ZoneInfo) -> bool:
    """True for the second occurrence of a wall time when clocks go back."""
    naive = slot.astimezone(zone).replace(tzinfo=None)
    first = naive.replace(tzinfo=zone, fold=0).astimezone(UTC)
    return first < slot.astimezone(UTC)


def latest_slot(schedule: Schedule, horizon: datetime) -> datetime | None:
    """The latest cron time at or before ``horizon`` (UTC), skipping DST repeats."""
    zone = zone_of(schedule)
    it = croniter(schedule.cron, (horizon + timedelta(microseconds=1)).astimezone(zone))
    for _ in range(3):
        slot: datetime = it.get_prev(datetime)
        if not (_fixed_hour(schedule.cron) and _is_repeat(slot, zone)):
            return slot.astimezone(UTC)
    return None


def next_slots(schedule: Schedule, now: datetime, count: int = 3) -> list[datetime]:
    """The next ``count`` cron times after ``now`` (UTC), skipping DST repeats."""
    zone = zone_of(schedule)
    it = croniter(schedule.cron, now.astimezone(zone))
    slots: list[datetime] = []
    while len(slots) < count:
        slot: datetime = it.get_next(datetime)
        if _fixed_hour(schedule.cron) and _is_repeat(slot, zone):
            continue
        slots.append(slot.astimezone(UTC))
    return slots


def due_slot(schedule: Schedule, now: datetime) -> datetime | None:
    """The slot to fire now, if any: the latest one within the prepare lead, not yet checked.

    Slots missed while nothing ran collapse into this one: only the latest fires.
    """
    horizon = now + timedelta(minutes=schedule.prepare_minutes or 0)
    slot = latest_slot(schedule, horizon)
    start = schedule.checked_until or schedule.created_at
    if slot is None or (start is not None and slot <= start):
        return None
    return slot


# --- Firing ---------------------------------------------------------------------------------------


def fire(
    session: Session, settings: Settings, schedule: Schedule, slot: datetime, now: datetime
) -> int | None:
    """Record the firing of ``slot`` and prepare its issue; None when it was fired already.

    Commits. The firing row's unique key (schedule, due time) is the idempotency key.
    """
    firing = ScheduleFiring(schedule_id=schedule.id, due_at=slot)
    session.add(firing)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        return None
    newsletter = session.get(Newsletter, schedule.newsletter_id)
    local_time = (
        slot.astimezone(EARLIEST_ZONE).strftime("%H:%M") if schedule.reader_local_time else ""
    )
    issue_id: int | None = None
    if newsletter is not None:
        try:
            issue = lifecycle.create_digest(
                session,
                settings,
                newsletter,
                frequency=schedule.frequency,
                now=now,
                send_at=slot,
                schedule_id=schedule.id,
                local_send_time=local_time,
            )
            issue_id = issue.id
        except lifecycle.DispatchError as exc:
            log.warning("schedule %s fired at %s but made no issue: %s", schedule.id, slot, exc)
    firing.issue_id = issue_id
    schedule.checked_until = slot
    session.commit()
    log.info("schedule %s fired for %s: issue %s", schedule.id, slot.isoformat(), issue_id)
    return issue_id


def fire_due(session: Session, settings: Settings, now: datetime) -> list[int]:
    """Fire every enabled schedule that has a due slot; returns the issues created."""
    ids = list(session.scalars(select(Schedule.id).where(Schedule.enabled.is_(True))))
    session.commit()
    created: list[int] = []
    for schedule_id in ids:
        schedule = session.get(Schedule, schedule_id, populate_existing=True)
        if schedule is None or not schedule.enabled:
            continue
        try:
            slot = due_slot(schedule, now)
        except (ValueError, KeyError, ZoneInfoNotFoundError) as exc:
            log.error("schedule %s cannot be evaluated: %s", schedule_id, exc)
            continue
        if slot is None:
            continue
        try:
            issue_id = fire(session, settings, schedule, slot, now)
        except Exception:
            session.rollback()
            log.exception(
                "schedule %s failed to fire for %s; retrying next tick", schedule_id, slot
            )
            continue
        if issue_id is not None:
            created.append(issue_id)
    return created


# --- Display -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScheduleSummary:
    """One schedule with its next send times; ``to_json()`` is the API's ``schedule`` object."""

    id: int
    name: str
    newsletter: str | None
    cron: str
    timezone: str
    frequency: str | None
    reader_local_time: bool
    prepare_minutes: int
    enabled: bool
    next_runs: list[datetime]
    last_fired_for: datetime | None
    last_issue_id: int | None
    created_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        """The summary as plain JSON-able values (times as ISO 8601 strings)."""
        data = asdict(self)
        data["next_runs"] = [run.isoformat() for run in self.next_runs]
        for key in ("last_fired_for", "created_at"):
            data[key] = data[key].isoformat() if data[key] is not None else None
        return data


def describe(session: Session, schedule: Schedule, now: datetime | None = None) -> ScheduleSummary:
    """A schedule with its next send times and its last firing."""
    now = now or utcnow()
    newsletter = session.get(Newsletter, schedule.newsletter_id)
    last = session.scalar(
        select(ScheduleFiring)
        .where(ScheduleFiring.schedule_id == schedule.id)
        .order_by(ScheduleFiring.due_at.desc())
        .limit(1)
    )
    try:
        upcoming = next_slots(schedule, now) if schedule.enabled else []
    except (ValueError, KeyError):
        upcoming = []
    return ScheduleSummary(
        id=schedule.id,
        name=schedule.name,
        newsletter=newsletter.slug if newsletter is not None else None,
        cron=schedule.cron,
        timezone=schedule.timezone,
        frequency=Frequency(schedule.frequency).value if schedule.frequency else None,
        reader_local_time=schedule.reader_local_time,
        prepare_minutes=schedule.prepare_minutes,
        enabled=schedule.enabled,
        next_runs=upcoming,
        last_fired_for=last.due_at if last is not None else None,
        last_issue_id=last.issue_id if last is not None else None,
        created_at=schedule.created_at,
    )
