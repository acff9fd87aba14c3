"""``newsletter db``: create and upgrade the schema, show where it stands."""

from __future__ import annotations

import click
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from flask.cli import AppGroup

from newsletter.cli.common import fail, settings
from newsletter.settings import redact_url
from newsletter.store.migrate import alembic_config, current_revision, upgrade


def head_revision(database_url: str) -> str | None:
    """The newest revision among the shipped migrations."""
    head: str | None = ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()
    return head


@click.group("db", cls=AppGroup)
def db_group() -> None:
    """Create or upgrade the database schema."""


@db_group.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
def upgrade_command(revision: str) -> None:
    """Run the migrations (creates the database tables on first use)."""
    url = settings().database_url
    try:
        upgrade(url, revision)
    except CommandError as exc:  # e.g. an unknown --revision
        fail(f"{exc}; see `newsletter db current` for where the database stands")
    now = current_revision(url)
    click.echo(f"Database {redact_url(url)} is at revision {now}.")


@db_group.command("current")
def current_command() -> None:
    """Show the schema revision; exit 1 when the database is not migrated to the newest."""
    url = settings().database_url
    now = current_revision(url)
    head = head_revision(url)
    if now is None:
        fail(f"{redact_url(url)} has no schema yet; run `newsletter db upgrade`.")
    if now != head:
        fail(
            f"{redact_url(url)} is at revision {now}, the newest is {head}; "
            "run `newsletter db upgrade`."
        )
    click.echo(f"{now} (head)")


commands = [db_group]
