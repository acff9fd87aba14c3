"""Helpers for writing ``newsletter`` commands: settings, sessions, domain errors, tables.

Commands registered on the group run inside the Flask app context (FlaskGroup pushes it), so
:func:`settings` and :func:`session` read the app built from ``NEWSLETTER_*`` variables.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn, TypeVar

import click
from flask import current_app, has_app_context
from flask.cli import ScriptInfo
from sqlalchemy.orm import Session

from newsletter.content.feeds import FeedError
from newsletter.issues.content import NothingToPreview
from newsletter.issues.lifecycle import DispatchError
from newsletter.issues.schedules import ScheduleError, ScheduleNotFound
from newsletter.readers.newsletters import NewsletterError
from newsletter.settings import Settings
from newsletter.store.db import session_scope
from newsletter.store.models import MAX_ID

T = TypeVar("T")

# The domain core's refusals: each message says what was wrong and what to do instead, so a
# command shows it as `Error: …` (exit 1) rather than a traceback.
DOMAIN_ERRORS: tuple[type[Exception], ...] = (
    DispatchError,
    FeedError,
    NewsletterError,
    NothingToPreview,
    ScheduleError,
    ScheduleNotFound,
)

# sysexits.h, which MTAs read from a command they pipe mail to: 65 bounces the message for good
# (with our stderr), 75 defers it and retries later.
EX_DATAERR = 65
EX_TEMPFAIL = 75

# A row id argument: a clear usage error for 0, negatives and numbers no id column can hold.
ID = click.IntRange(1, MAX_ID)


def settings() -> Settings:
    """The settings of the app the command runs in (loading the app if a plain click command)."""
    if not has_app_context():
        ctx = click.get_current_context()
        app = ctx.ensure_object(ScriptInfo).load_app()
        ctx.with_resource(app.app_context())
    value: Settings = current_app.extensions["newsletter.settings"]
    return value


@contextmanager
def session() -> Iterator[Session]:
    """A session that commits when the block succeeds and rolls back when it raises."""
    with session_scope(settings().database_url) as db:
        yield db


@contextmanager
def domain_session(*also: type[Exception]) -> Iterator[Session]:
    """A :func:`session` whose domain refusals (and ``also``) become `Error: …` and exit 1."""
    try:
        with session() as db:
            yield db
    except (*DOMAIN_ERRORS, *also) as exc:
        fail(str(exc))


def run(action: Callable[..., T], *args: object, **kwargs: object) -> T:
    """Call a domain function with a fresh session first; its refusals become `Error: …`."""
    with domain_session() as db:
        return action(db, *args, **kwargs)


def script_output(command: Callable[..., T]) -> Callable[..., T]:
    """Add ``--quiet`` (only the new id, for scripts) and ``--json`` to a command that creates.

    Asking for both is refused before the command runs, so nothing is created by a bad call.
    """

    @functools.wraps(command)
    def checked(*args: Any, quiet: bool, as_json: bool, **kwargs: Any) -> T:
        if quiet and as_json:
            raise click.UsageError("use either --quiet or --json, not both")
        return command(*args, quiet=quiet, as_json=as_json, **kwargs)

    with_json = click.option(
        "--json", "as_json", is_flag=True, help="Print what was created as one JSON object."
    )(checked)
    return click.option("--quiet", "-q", is_flag=True, help="Print only the new id (for scripts).")(
        with_json
    )


def created(
    kind: str, item_id: int, summary: str, data: dict[str, object], *, quiet: bool, as_json: bool
) -> None:
    """Report a new row: ``KIND ID created: SUMMARY``, or its bare id, or JSON."""
    if as_json:
        click.echo(json.dumps({kind.lower(): data}))
    elif quiet:
        click.echo(item_id)
    else:
        click.echo(f"{kind} {item_id} created: {summary}")


def fail(message: str, code: int = 1) -> NoReturn:
    """Stop the command with ``Error: message`` on stderr and exit status ``code`` (1 or 2)."""
    raise (SetupError if code == 2 else CommandError)(message)


class CommandError(click.ClickException):
    """A user-facing failure: its message, exit status 1, no traceback."""

    exit_code = 1


class SetupError(CommandError):
    """The environment is wrong for this command (e.g. production): exit status 2."""

    exit_code = 2


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Format rows as a plain aligned text table (no colours, safe to pipe)."""
    cells = [[str(h) for h in headers]] + [["" if v is None else str(v) for v in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [
        "  ".join(value.ljust(widths[i]) for i, value in enumerate(row)).rstrip() for row in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
