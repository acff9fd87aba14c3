"""``newsletter newsletters``: create the lists readers can choose, and see them at a glance."""

from __future__ import annotations

import click
from flask.cli import AppGroup

from newsletter.cli.common import run, session, table
from newsletter.readers.newsletters import create_newsletter, newsletter_rows
from newsletter.store.models import (
    Frequency,
    NewsletterKind,
)


def _categories(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


@click.group("newsletters", cls=AppGroup)
def newsletters_group() -> None:
    """Create and list newsletters (the lists readers choose)."""


@newsletters_group.command("create")
@click.argument("slug")
@click.option("--name", required=True, help="Shown to readers, e.g. 'Daily digest'.")
@click.option("--description", default="", help="One sentence shown on the signup form.")
@click.option(
    "--kind",
    type=click.Choice([k.value for k in NewsletterKind]),
    default=NewsletterKind.DIGEST.value,
    show_default=True,
    help="digest: built from the latest posts; campaign: written by an editor.",
)
@click.option(
    "--frequency",
    type=click.Choice([f.value for f in Frequency]),
    default=Frequency.DAILY.value,
    show_default=True,
    help="Default digest frequency for new readers.",
)
@click.option("--categories", default="", help="Comma-separated post categories (empty: all).")
def create_command(
    slug: str, name: str, description: str, kind: str, frequency: str, categories: str
) -> None:
    """Create a newsletter with the given SLUG (lowercase letters, digits, hyphens)."""
    row = run(
        create_newsletter,
        slug,
        name,
        description=description,
        kind=NewsletterKind(kind),
        frequency=Frequency(frequency),
        categories=_categories(categories),
    )
    summary = f"Created newsletter {row.slug!r} ({row.name}, {kind}"
    click.echo(summary + (f", {frequency})." if kind == NewsletterKind.DIGEST.value else ")."))


@newsletters_group.command("list")
def list_command() -> None:
    """Show every newsletter with its number of active subscribers."""
    with session() as db:
        rows = newsletter_rows(db)
    if not rows:
        click.echo(
            "No newsletters yet. Create one with: newsletter newsletters create daily "
            "--name 'Daily digest'"
        )
        return
    click.echo(
        table(
            ["slug", "name", "kind", "frequency", "active subscribers"],
            [(r.slug, r.name, r.kind, r.frequency, r.active_subscribers) for r in rows],
        )
    )


commands = [newsletters_group]
