"""The ``newsletter`` command: a Flask CLI group (so ``routes`` and ``shell`` work) plus our own.

Command groups live in modules beside this one and are registered in :func:`register_commands`.
Helpers for writing a command (settings, a database session, failing with a message, tables) are
in :mod:`newsletter.cli.common`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib import import_module

import click
from flask import Flask
from flask.cli import FlaskGroup, NoAppException
from sqlalchemy.exc import OperationalError, ProgrammingError

from newsletter.settings import SettingsError

# Every module listed here exports ``commands``: a list of click commands or groups to add.
# Adding a command group is ONE line here (keep the list sorted by module name).
COMMAND_MODULES: tuple[str, ...] = (
    "newsletter.cli.check",  # newsletter check
    "newsletter.cli.db",  # newsletter db upgrade|current
    "newsletter.cli.dev",  # newsletter dev
    "newsletter.cli.digest",  # newsletter digest preview|send|test
    "newsletter.cli.feeds",  # newsletter feeds add|list|remove|ingest
    "newsletter.cli.inbound",  # newsletter inbound process (bounces, complaints, mailto)
    "newsletter.cli.issues",  # newsletter issues list|show|send|pause|…, campaigns create
    "newsletter.cli.newsletters",  # newsletter newsletters create|list
    "newsletter.cli.schedules",  # newsletter schedules create|list|enable|disable|delete
    "newsletter.cli.servers",  # newsletter web|worker|beat|ping
    "newsletter.cli.subscribers",  # newsletter subscribers export
    "newsletter.cli.tokens",  # newsletter tokens create|list|revoke
)


class SettingsProblem(NoAppException):
    """Settings refused to load: shown as one line on stderr, exit status 2, no traceback."""

    exit_code = 2

    def show(self, file: object = None) -> None:
        """Print only the message; a usage text would not help with a bad setting."""
        click.echo(f"Error: {self.message}", err=True)


def create_cli_app() -> Flask:
    """Build the app from ``NEWSLETTER_*`` variables for commands that need an app context."""
    from newsletter import create_app

    try:
        return create_app()
    except SettingsError as exc:
        raise SettingsProblem(str(exc)) from None


def register_commands(group: click.Group) -> None:
    """Add the commands of every module in :data:`COMMAND_MODULES` to ``group``."""
    for name in COMMAND_MODULES:
        module = import_module(name)
        for command in module.commands:
            group.add_command(command)


@click.group(
    cls=FlaskGroup,
    create_app=create_cli_app,
    add_version_option=False,
    # Configuration comes from NEWSLETTER_* variables only; a stray .env does not apply itself.
    load_dotenv=False,
    set_debug_flag=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
@click.version_option(package_name="newsletter", message="%(prog)s %(version)s")
def cli() -> None:
    """Subscriptions and digest dispatch for a news site.

    Configure with NEWSLETTER_* environment variables (see the README). Start with
    `newsletter dev`: it needs no Redis, no PostgreSQL and no SMTP server.
    """


register_commands(cli)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``newsletter`` console script."""
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="newsletter")
    except SettingsError as exc:
        click.echo(f"Error: {exc}", err=True)
        return 2
    except (OperationalError, ProgrammingError) as exc:
        # The usual causes: the database server is down, or the schema was never created.
        first_line = str(exc.orig or exc).strip().splitlines()[0]
        click.echo(
            f"Error: database problem: {first_line}\n"
            "Is the database reachable (NEWSLETTER_DATABASE_URL) and migrated "
            "(`newsletter db upgrade`)?",
            err=True,
        )
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover - `python -m newsletter.cli` uses __main__.py
    sys.exit(main())
