"""``newsletter schedules``: periodic digests (cron in a time zone), changed at runtime."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import click
from flask.cli import AppGroup

from newsletter.cli.common import ID, created, run, script_output, table
from newsletter.issues import schedules
from newsletter.issues.schedules import ScheduleSummary
from newsletter.store.models import Frequency

LOCAL_TIME_SPAN = timedelta(hours=26)  # from the first zone (UTC+14) to the last (UTC-12)


def _next(info: ScheduleSummary) -> str:
    """When the schedule runs next, as a table cell."""
    runs = info.next_runs
    if not runs:
        return "(disabled)" if not info.enabled else ""
    first = runs[0]
    if not info.reader_local_time:
        return first.strftime("%Y-%m-%d %H:%M") + " UTC"
    # Each reader gets it at the hour in their own zone: from UTC+14, the first zone to reach
    # it, to UTC-12, the last, 26 hours later.
    last = first + LOCAL_TIME_SPAN
    return (
        f"{first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC "
        "(each reader's local hour, UTC+14 first, UTC-12 last)"
    )


@click.group("schedules", cls=AppGroup)
def schedules_group() -> None:
    """Periodic digests: a cron expression in a time zone. Beat's tick picks up changes."""


@schedules_group.command("create")
@click.option("--newsletter", "slug", required=True, help="A digest newsletter's slug.")
@click.option("--cron", required=True, help='Five fields, e.g. "0 8 * * *" (08:00 daily).')
@click.option("--timezone", default="UTC", show_default=True, help="IANA zone the cron is in.")
@click.option("--frequency", type=click.Choice([f.value for f in Frequency]), default=None)
@click.option(
    "--reader-local-time",
    is_flag=True,
    help="Deliver at the cron's time in each reader's own time zone.",
)
@click.option(
    "--prepare-minutes",
    type=click.IntRange(0, schedules.MAX_PREPARE_MINUTES),
    default=0,
    show_default=True,
    help="Prepare the issue this long before, so an editor can preview, edit or hold it.",
)
@click.option("--name", default="", help="A label for listings.")
@click.option("--disabled", is_flag=True, help="Create it switched off.")
@script_output
def create_command(
    slug: str,
    cron: str,
    timezone: str,
    frequency: str | None,
    reader_local_time: bool,
    prepare_minutes: int,
    name: str,
    disabled: bool,
    quiet: bool,
    as_json: bool,
) -> None:
    """Add a schedule; prints its id and next run."""

    def create(db: Any) -> ScheduleSummary:
        schedule = schedules.create_schedule(
            db,
            newsletter=slug,
            cron=cron,
            timezone=timezone,
            frequency=frequency,
            reader_local_time=reader_local_time,
            prepare_minutes=prepare_minutes,
            name=name,
            enabled=not disabled,
        )
        return schedules.describe(db, schedule)

    info = run(create)
    summary = f"{info.cron} ({info.timezone}), next run {_next(info) or 'never'}"
    created("Schedule", info.id, summary, info.to_json(), quiet=quiet, as_json=as_json)


@schedules_group.command("list")
def list_command() -> None:
    """Every schedule with its next run."""

    def read(db: Any) -> list[ScheduleSummary]:
        return [schedules.describe(db, s) for s in schedules.list_schedules(db)]

    rows = run(read)
    if not rows:
        click.echo(
            "No schedules yet. Add one: newsletter schedules create --newsletter daily --cron "
            '"0 8 * * *" --timezone Europe/Paris'
        )
        return
    click.echo(
        table(
            ["id", "newsletter", "cron", "timezone", "frequency", "options", "enabled", "next run"],
            [
                (
                    r.id,
                    r.newsletter,
                    r.cron,
                    "each reader's" if r.reader_local_time else r.timezone,
                    r.frequency,
                    f"prepare {r.prepare_minutes} min" if r.prepare_minutes else "",
                    "yes" if r.enabled else "no",
                    _next(r),
                )
                for r in rows
            ],
        )
    )


def _set_enabled(schedule_id: int, enabled: bool) -> None:
    run(schedules.update_schedule, schedule_id, enabled=enabled)
    click.echo(f"Schedule {schedule_id} {'enabled' if enabled else 'disabled'}.")


@schedules_group.command("enable")
@click.argument("schedule_id", metavar="ID", type=ID)
def enable_command(schedule_id: int) -> None:
    """Switch a schedule on (slots missed while it was off do not fire)."""
    _set_enabled(schedule_id, True)


@schedules_group.command("disable")
@click.argument("schedule_id", metavar="ID", type=ID)
def disable_command(schedule_id: int) -> None:
    """Switch a schedule off."""
    _set_enabled(schedule_id, False)


@schedules_group.command("delete")
@click.argument("schedule_id", metavar="ID", type=ID)
def delete_command(schedule_id: int) -> None:
    """Remove a schedule (its past issues stay)."""
    run(schedules.delete_schedule, schedule_id)
    click.echo(f"Schedule {schedule_id} deleted.")


commands = [schedules_group]
