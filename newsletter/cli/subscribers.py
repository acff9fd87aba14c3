"""``newsletter subscribers``: what we hold about one reader (data subject access requests)."""

from __future__ import annotations

import json

import click
from flask.cli import AppGroup

from newsletter.cli.common import fail, session
from newsletter.readers.addresses import InvalidAddress, normalise
from newsletter.readers.consent import export_subscriber


@click.group("subscribers", cls=AppGroup)
def subscribers_group() -> None:
    """Look up what is stored about a reader."""


@subscribers_group.command("export")
@click.argument("email")
def export_command(email: str) -> None:
    """Print everything stored about EMAIL as JSON (subscriptions, consent records)."""

    try:
        address = normalise(email)
    except InvalidAddress as exc:
        fail(f"{email!r}: {exc}")
    with session() as db:
        data = export_subscriber(db, address)
    if data is None:
        fail(f"no subscriber with address {address}")
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


commands = [subscribers_group]
