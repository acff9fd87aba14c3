"""Cron schedules: validation, due slots, DST, missed firings, the editor's veto, local time,
and firing exactly once when ticks race (threads against PostgreSQL)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsletter.delivery.tick import tick
from newsletter.issues import lifecycle, schedules
from newsletter.issues.schedules import ScheduleError, create_schedule, update_schedule
from newsletter.mail.transport import close_transports
from newsletter.settings import Settings
from newsletter.store.db import dispose_engines, get_sessionmaker, utcnow
from newsletter.store.models import (
    Frequency,
    Issue,
    IssueStatus,
    NewsletterKind,
    Schedule,
    ScheduleFiring,
)
from tests.support import dispatching as seed
from tests.support.readers import Lists, make_lists
from tests.support.services import migrated_postgres_database
from tests.support.smtp import SMTPSink


@pytest.fixture
def settings(settings: Settings, smtp_sink: SMTPSink) -> Settings:
    """conftest's settings delivering to the sink, small batches."""
    return replace(settings, smtp_url=smtp_sink.url, batch_size=5)


@pytest.fixture
def app(app: Flask) -> Iterator[Flask]:
    """conftest's app with an app context pushed (for rendering)."""
    with app.app_context():
        yield app
    close_transports()


def day_start(days_ago: int) -> datetime:
    """Midnight UTC ``days_ago`` days before today (schedule tests live in the recent past)."""
    today = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=days_ago)


def test_validation_says_what_is_wrong(db: Session) -> None:
    seed.newsletter(db, "daily")
    seed.newsletter(db, "offers", kind=NewsletterKind.CAMPAIGN)
    with pytest.raises(schedules.ScheduleError, match="five fields"):
        schedules.create_schedule(db, newsletter="daily", cron="0 8 * *")
    with pytest.raises(schedules.ScheduleError, match="not a valid cron"):
        schedules.create_schedule(db, newsletter="daily", cron="0 25 * * *")
    with pytest.raises(schedules.ScheduleError, match="Unknown time zone"):
        schedules.create_schedule(db, newsletter="daily", cron="0 8 * * *", timezone="Mars/Base")
    with pytest.raises(schedules.ScheduleError, match="campaign newsletter"):
        schedules.create_schedule(db, newsletter="offers", cron="0 8 * * *")
    with pytest.raises(schedules.ScheduleError, match="no newsletter 'nope'"):
        schedules.create_schedule(db, newsletter="nope", cron="0 8 * * *")
    with pytest.raises(schedules.ScheduleError, match="frequency"):
        schedules.create_schedule(db, newsletter="daily", cron="0 8 * * *", frequency="hourly")
    with pytest.raises(schedules.ScheduleError, match="prepare minutes"):
        schedules.create_schedule(db, newsletter="daily", cron="0 8 * * *", prepare_minutes=-5)
    db.rollback()
    assert db.scalar(select(func.count()).select_from(Schedule)) == 0
    ok = schedules.create_schedule(
        db, newsletter="daily", cron="  30 7  * * mon ", timezone="Europe/Paris"
    )
    assert ok.cron == "30 7 * * mon" and ok.frequency == Frequency.DAILY


def test_missed_slots_fire_once_for_the_latest(db: Session, settings: Settings) -> None:
    seed.newsletter(db, "daily")
    created = day_start(4) + timedelta(hours=12)
    schedule = schedules.create_schedule(db, newsletter="daily", cron="0 8 * * *", now=created)
    db.commit()
    # Everything was down for three days; at 09:00 today the tick catches up once.
    now = day_start(0) + timedelta(hours=9)
    assert schedules.due_slot(schedule, now) == day_start(0) + timedelta(hours=8)
    fired = schedules.fire_due(db, settings, now)
    assert len(fired) == 1
    assert schedules.fire_due(db, settings, now + timedelta(minutes=1)) == []
    firings = db.scalars(select(ScheduleFiring)).all()
    assert [f.due_at for f in firings] == [day_start(0) + timedelta(hours=8)]
    issue = db.get(Issue, fired[0])
    assert issue is not None and issue.schedule_id == schedule.id
    assert issue.status == IssueStatus.SKIPPED  # no posts: recorded, no mail
    # Nothing due before creation fires: a new schedule is not retroactive.
    fresh = schedules.create_schedule(db, newsletter="daily", cron="0 8 * * *", now=now)
    assert schedules.due_slot(fresh, now) is None


def test_dst_changes_keep_the_local_time_and_fire_once(db: Session, settings: Settings) -> None:
    seed.newsletter(db, "daily")
    paris = schedules.create_schedule(
        db, newsletter="daily", cron="0 8 * * *", timezone="Europe/Paris"
    )
    # Spring forward (2025-03-30): 08:00 Paris is 07:00 UTC before, 06:00 UTC after.
    runs = schedules.next_slots(paris, datetime(2025, 3, 28, 12, tzinfo=UTC), 3)
    assert runs == [
        datetime(2025, 3, 29, 7, tzinfo=UTC),
        datetime(2025, 3, 30, 6, tzinfo=UTC),
        datetime(2025, 3, 31, 6, tzinfo=UTC),
    ]
    # Fall back (2025-10-26): 02:30 happens twice in Paris; the schedule fires once.
    night = schedules.create_schedule(
        db,
        newsletter="daily",
        cron="30 2 * * *",
        timezone="Europe/Paris",
        now=datetime(2025, 10, 25, 12, tzinfo=UTC),
    )
    db.commit()
    fired: list[int] = []
    tick = datetime(2025, 10, 25, 22, tzinfo=UTC)
    while tick < datetime(2025, 10, 26, 6, tzinfo=UTC):
        fired += schedules.fire_due(db, settings, tick)
        tick += timedelta(minutes=10)
    due = db.scalars(
        select(ScheduleFiring.due_at).where(ScheduleFiring.schedule_id == night.id)
    ).all()
    assert due == [datetime(2025, 10, 26, 0, 30, tzinfo=UTC)]  # 02:30 CEST, the first one
    assert len(fired) == 1


def test_prepare_ahead_lets_an_editor_hold_the_issue(
    db: Session, settings: Settings, app: Flask, smtp_sink: SMTPSink
) -> None:
    daily = seed.newsletter(db, "daily")
    base = day_start(1)
    seed.posts(db, 2, now=base + timedelta(hours=7))
    seed.reader(db, "reader@example.com", [daily])
    schedule = schedules.create_schedule(
        db, newsletter="daily", cron="0 8 * * *", prepare_minutes=60, now=base
    )
    db.commit()
    queue = seed.InlineQueue(settings)

    assert schedules.fire_due(db, settings, base + timedelta(hours=6, minutes=50)) == []
    prepared = schedules.fire_due(db, settings, base + timedelta(hours=7, minutes=10))
    assert len(prepared) == 1
    issue = lifecycle.get_issue(db, prepared[0])
    assert issue.status == IssueStatus.SCHEDULED
    assert issue.send_at == base + timedelta(hours=8)
    assert issue.subject and issue.post_ids  # an editor can preview it now

    lifecycle.hold(db, issue.id)
    assert lifecycle.start_due(db, settings, queue, base + timedelta(hours=8, minutes=1)) == []
    assert lifecycle.get_issue(db, issue.id).status == IssueStatus.SCHEDULED
    lifecycle.edit(db, settings, issue.id, subject="Edited by the desk")
    db.commit()
    lifecycle.hold(db, issue.id, held=False)
    started = lifecycle.start_due(db, settings, queue, base + timedelta(hours=8, minutes=2))
    assert started == [issue.id]
    queue.drain()
    assert [m.message["Subject"] for m in smtp_sink.messages] == ["Edited by the desk"]
    assert lifecycle.get_issue(db, issue.id).status == IssueStatus.SENT
    assert schedule.id == issue.schedule_id


def test_unheld_prepared_issue_goes_out_on_time_through_the_tick(
    db: Session, settings: Settings, app: Flask, smtp_sink: SMTPSink
) -> None:
    daily = seed.newsletter(db, "daily")
    base = day_start(1)
    seed.posts(db, 1, now=base + timedelta(hours=7))
    for i in range(7):
        seed.reader(db, f"r{i}@example.com", [daily])
    schedules.create_schedule(
        db, newsletter="daily", cron="0 8 * * *", prepare_minutes=30, now=base
    )
    db.commit()
    queue = seed.InlineQueue(settings)
    early = tick(settings, queue, base + timedelta(hours=7, minutes=40))
    assert len(early.fired) == 1 and early.started == []
    on_time = tick(settings, queue, base + timedelta(hours=8, seconds=20))
    assert on_time.fired == [] and on_time.started == early.fired
    queue.drain()
    assert sorted(r for m in smtp_sink.messages for r in m.rcpt_tos) == sorted(
        f"r{i}@example.com" for i in range(7)
    )


def test_reader_local_time_schedule_creates_a_cohort_issue(db: Session, settings: Settings) -> None:
    daily = seed.newsletter(db, "daily")
    base = day_start(2)
    seed.posts(db, 1, now=base - timedelta(hours=8))
    seed.reader(db, "r@example.com", [daily])
    schedule = schedules.create_schedule(
        db,
        newsletter="daily",
        cron="0 8 * * *",
        reader_local_time=True,
        now=base - timedelta(days=1),
    )
    db.commit()
    # 08:00 in UTC+14 (the first zone to reach it) is 18:00 UTC the day before.
    first_zone_time = base - timedelta(hours=6)
    assert schedules.next_slots(schedule, base - timedelta(hours=12), 1) == [first_zone_time]
    fired = schedules.fire_due(db, settings, first_zone_time + timedelta(seconds=5))
    issue = lifecycle.get_issue(db, fired[0])
    assert issue.local_send_time == "08:00" and issue.send_at == first_zone_time
    assert issue.status == IssueStatus.SCHEDULED


def test_editing_timing_or_reenabling_never_fires_past_slots(
    db: Session, settings: Settings
) -> None:
    seed.newsletter(db, "daily")
    base = day_start(3)
    schedule = schedules.create_schedule(db, newsletter="daily", cron="0 8 * * *", now=base)
    schedules.update_schedule(db, schedule.id, enabled=False)
    db.commit()
    now = day_start(0) + timedelta(hours=10)
    assert schedules.fire_due(db, settings, now) == []
    schedules.update_schedule(db, schedule.id, now=now, enabled=True)
    db.commit()
    assert schedules.fire_due(db, settings, now) == []
    assert schedules.fire_due(db, settings, now + timedelta(days=1)) != []
    schedules.update_schedule(db, schedule.id, now=now + timedelta(days=1), cron="0 6 * * *")
    db.commit()
    assert schedules.fire_due(db, settings, now + timedelta(days=1, minutes=1)) == []
    with pytest.raises(schedules.ScheduleError, match="Unknown schedule fields"):
        schedules.update_schedule(db, schedule.id, colour="red")
    described = schedules.describe(db, schedule, now)
    assert described.cron == "0 6 * * *" and described.enabled is True
    assert len(described.next_runs) == 3


# --- racing ticks on PostgreSQL -------------------------------------------------------------------


@dataclass
class RecordingQueue:
    """A thread-safe TaskQueue that only records what was enqueued."""

    fan_outs: list[int] = field(default_factory=list)
    batches: list[tuple[int, list[int]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fan_out(self, issue_id: int) -> None:
        with self.lock:
            self.fan_outs.append(issue_id)

    def send_batch(self, issue_id: int, delivery_ids: list[int]) -> None:
        with self.lock:
            self.batches.append((issue_id, delivery_ids))


@pytest.fixture
def pg_settings(settings: Settings) -> Iterator[Settings]:
    """Settings on a fresh PostgreSQL database."""
    with migrated_postgres_database() as url:
        yield replace(settings, database_url=url)
        dispose_engines()


def test_concurrent_ticks_fire_and_start_each_slot_exactly_once(pg_settings: Settings) -> None:
    factory = get_sessionmaker(pg_settings.database_url)
    base = day_start(1)
    with factory() as db:
        daily = seed.newsletter(db, "daily")
        weekly = seed.newsletter(db, "weekly", frequency=Frequency.WEEKLY)
        seed.posts(db, 3, now=base + timedelta(hours=7))
        seed.reader(db, "a@example.com", [daily, weekly])
        for slug in ("daily", "weekly"):
            for cron in ("0 8 * * *", "30 7 * * *"):
                schedules.create_schedule(db, newsletter=slug, cron=cron, now=base)
        db.commit()

    queue = RecordingQueue()
    now = base + timedelta(hours=8, minutes=5)
    barrier = threading.Barrier(6)
    errors: list[BaseException] = []

    def one_beat() -> None:
        try:
            with factory() as db:
                barrier.wait()
                schedules.fire_due(db, pg_settings, now)
                lifecycle.start_due(db, pg_settings, queue, now)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=one_beat) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    # A restarted beat ticking again at the same and a later time changes nothing.
    with factory() as db:
        schedules.fire_due(db, pg_settings, now)
        lifecycle.start_due(db, pg_settings, queue, now + timedelta(minutes=1))
        firings = db.scalars(select(ScheduleFiring)).all()
        issues = db.scalars(select(Issue)).all()
    assert len(firings) == 4  # two schedules per newsletter, one slot each
    assert len({(f.schedule_id, f.due_at) for f in firings}) == 4
    assert len(issues) == 4 and all(f.issue_id for f in firings)
    started = sorted(i.id for i in issues if i.status == IssueStatus.SENDING)
    # Every issue with posts was started by exactly one of the racing ticks.
    assert started == sorted(i.id for i in issues if i.post_ids)
    assert sorted(queue.fan_outs) == started


@pytest.fixture
def lists(db: Session) -> Lists:
    """The reader-side lists (daily, weekly, offers, private)."""
    return make_lists(db)


def test_schedule_frequency_null_still_means_the_default(db: Session, lists: Lists) -> None:
    schedule = create_schedule(db, newsletter="daily", cron="0 7 * * *", frequency="weekly")
    assert update_schedule(db, schedule.id, frequency=None).frequency == "daily"
    with pytest.raises(ScheduleError, match="enabled"):
        update_schedule(db, schedule.id, enabled=None)


@pytest.mark.parametrize(
    ("expression", "field", "accepted"),
    [
        ("61 8 * * *", "minute field '61'", "minutes run 0-59"),
        ("0 25 * * *", "hour field '25'", "hours run 0-23"),
        ("0 8 32 * *", "day-of-month field '32'", "days of the month run 1-31"),
        ("0 8 * 13 *", "month field '13'", "months run 1-12 or jan-dec"),
        ("0 8 * * mon-fry", "day-of-week field 'mon-fry'", "days of the week run 0-7 or sun-sat"),
    ],
)
def test_an_invalid_cron_expression_names_its_field_and_range(
    expression: str, field: str, accepted: str
) -> None:
    with pytest.raises(ScheduleError) as refused:
        schedules.validate_cron(expression)
    message = str(refused.value)
    assert f"the {field} is wrong: {accepted}" in message


def test_valid_cron_expressions_and_macros_pass_normalised() -> None:
    assert schedules.validate_cron(" 30  7 * *  mon-fri ") == "30 7 * * mon-fri"
    assert schedules.validate_cron("@daily") == "@daily"
