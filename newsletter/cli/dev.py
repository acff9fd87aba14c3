"""``newsletter dev``: everything on embedded defaults, in one command."""

from __future__ import annotations

import sys

import click
from flask.cli import AppGroup

from newsletter.cli.common import fail
from newsletter.ops import devserver
from newsletter.settings import Settings

_group = AppGroup()


@_group.command("dev", with_appcontext=False)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--concurrency", default=2, show_default=True, type=click.IntRange(1), help="Worker processes."
)
def dev_command(host: str, port: int, concurrency: int) -> None:
    """Set up a development database with demo data, then run web, worker and beat.

    No Redis, PostgreSQL or SMTP server needed: the database is a SQLite file, the broker is a
    folder and mail is captured to files you can read at /dev/mail/. Ctrl-C stops everything.
    """
    settings = Settings.from_env()
    if settings.is_production:
        fail(
            "`newsletter dev` is for development, but NEWSLETTER_ENV=production. "
            "Run `newsletter web`, `newsletter worker` and `newsletter beat` instead "
            "(see docker-compose.yml).",
            code=2,
        )
    if not devserver.port_free(host, port):
        fail(f"{host}:{port} is already in use; stop what runs there or pick --port {port + 1}.")
    try:
        devserver.prepare(settings, click.echo, devserver.server_url(host, port))
    except KeyboardInterrupt:
        # Each setup step commits on its own and is idempotent, so a rerun picks up from here.
        fail("Stopped before the servers started; run `newsletter dev` again to carry on.")
    sys.exit(devserver.run(settings, host, port, concurrency))


commands = [dev_command]
