"""The ``newsletter`` command: a Flask CLI group (so ``routes`` and ``shell`` work) plus our own.

Command groups live in modules beside this one and are registered in :func:`register_commands`.
Helpers for writing a command (settings, a database session, failing with a message, tables) are
in :mod:`newsletter.cli.common`.
"""

from __future__ import annotations

import copy
import functools
import logging
import os
import sys
from collections.abc import Callable, Sequence
from importlib import import_module
from typing import Any

import click
from flask import Flask
from flask.cli import FlaskGroup, NoAppException, routes_command, run_command, shell_command
from sqlalchemy.exc import OperationalError, ProgrammingError

from newsletter.cli.common import SetupError
from newsletter.settings import Settings, SettingsError

# Every module listed here exports ``commands``: a list of click commands or groups to add.
# Adding a command group is ONE line here (keep the list sorted by module name).
COMMAND_MODULES: tuple[str, ...] = (
    "newsletter.cli.check",  # newsletter check
    "newsletter.cli.db",  # newsletter db upgrade|current
    "newsletter.cli.dev",  # newsletter dev
    "newsletter.cli.dns",  # newsletter dns (the DKIM, SPF and DMARC records)
    "newsletter.cli.digest",  # newsletter digest preview|send|test
    "newsletter.cli.feeds",  # newsletter feeds add|list|remove|ingest
    "newsletter.cli.inbound",  # newsletter inbound process|serve|poll (bounces, complaints…)
    "newsletter.cli.issues",  # newsletter issues list|show|check|send|pause|…, campaigns create
    "newsletter.cli.newsletters",  # newsletter newsletters create|list
    "newsletter.cli.schedules",  # newsletter schedules create|list|enable|disable|delete
    "newsletter.cli.servers",  # newsletter web|worker|beat|ping
    "newsletter.cli.subscribers",  # newsletter subscribers list|show|import|export|erase|…
    "newsletter.cli.tokens",  # newsletter tokens create|list|revoke
    "newsletter.cli.users",  # newsletter users create|list|set-role|disable|enable|…
    "newsletter.cli.webhooks",  # newsletter webhooks add|list|enable|disable|remove|deliveries|test
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


# The commands that may create the database where none is yet: the rest refuse, saying where they
# looked, instead of quietly starting a second, empty one in whatever folder they were run from.
CREATE_DATABASE = {("dev",), ("db", "upgrade")}
# ping talks to the broker only, dns to name servers; check reports a missing database among
# its other findings.
NO_DATABASE = {("ping",), ("check",), ("dns",)}
HELP = {"-h", "--help"}


class NewsletterGroup(FlaskGroup):
    """Flask's CLI group, showing only our commands and options.

    Flask's ``-A/--app``, ``--debug`` and ``-e/--env-file`` do not apply (the app is ours and is
    configured by NEWSLETTER_* variables); nor do ``run`` (see ``web`` and ``dev``) or plugins'
    commands such as Flask-Limiter's. ``shell`` and ``routes`` stay, as ours; ``run`` stays
    unlisted for ``newsletter dev``.
    """

    def __init__(self, **extra: Any) -> None:
        super().__init__(add_default_commands=False, **extra)
        flask_only = {"env_file", "app", "debug"}
        self.params = [p for p in self.params if p.name not in flask_only]
        self.add_command(shell_command, "shell")
        self.add_command(routes_command, "routes")
        # `newsletter dev` runs Flask's development server as its web part: kept, unlisted.
        dev_server = copy.copy(run_command)
        dev_server.hidden = True
        dev_server.callback = _without_request_log(run_command.callback)
        self.add_command(dev_server, "run")
        self._loaded_plugin_commands = True  # no plugin commands

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Our commands only: listing them must not build the app (or its data folder)."""
        return sorted(self.commands)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        """One of our commands, without looking into the app for more."""
        return self.commands.get(name)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        """Refuse to run a command that needs the database where there is none."""
        name, command, rest = super().resolve_command(ctx, args)
        # A bare group (`newsletter issues`) only shows its usage, and help is never refused.
        bare_group = isinstance(command, click.Group) and not rest
        if name is not None and not bare_group and not HELP.intersection(rest):
            wanted = (name, *rest[:1])
            if not any(wanted[: len(path)] == path for path in CREATE_DATABASE | NO_DATABASE):
                require_database()
        return name, command, rest


def _without_request_log(callback: Callable[..., Any] | None) -> Callable[..., Any]:
    """``callback`` with werkzeug's per-request log silenced (newsletter.access logs instead)."""
    assert callback is not None

    @functools.wraps(callback)
    def run(*args: Any, **kwargs: Any) -> Any:
        # Its line has the full path, and mailed links carry tokens there. WARNING still shows
        # the server's errors; its "Running on" banner goes too (`newsletter dev` prints one).
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        return callback(*args, **kwargs)

    return run


def require_database() -> None:
    """Stop with where the database was looked for when its SQLite file does not exist."""
    try:
        settings = Settings.read_env().filled()
    except SettingsError:
        return  # the command reports bad settings itself, in one line, first
    path = settings.sqlite_file()
    if path is None or path.exists():
        return
    if os.environ.get("NEWSLETTER_DATABASE_URL"):
        where = "NEWSLETTER_DATABASE_URL names it"
    else:
        where = f"NEWSLETTER_DATA_DIR is {settings.data_dir.resolve()}" + (
            "" if os.environ.get("NEWSLETTER_DATA_DIR") else ", relative to this folder"
        )
    raise SetupError(
        f"there is no database at {path} ({where}).\n"
        "Run the command in the folder where you ran `newsletter dev` or `newsletter db upgrade`, "
        "or point NEWSLETTER_DATA_DIR (or NEWSLETTER_DATABASE_URL) at the database; "
        "`newsletter db upgrade` creates a new one."
    )


@click.group(
    cls=NewsletterGroup,
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
