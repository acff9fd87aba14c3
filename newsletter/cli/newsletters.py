"""``newsletter newsletters``: create the lists readers can choose, and see them at a glance."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import click
from flask.cli import AppGroup
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from newsletter.cli.common import fail, session, table
from newsletter.store.models import (
    Frequency,
    Newsletter,
    NewsletterKind,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
)

SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


class NewsletterError(ValueError):
    """The newsletter cannot be created as asked; the message says why."""


@dataclass(frozen=True)
class NewsletterRow:
    """One line of the overview."""

    slug: str
    name: str
    kind: str
    frequency: str
    active_subscribers: int


def validate_slug(slug: str) -> str:
    """Return the slug if it is lowercase letters, digits and single hyphens (max 64)."""
    if not slug or len(slug) > 64 or not SLUG.match(slug):
        raise NewsletterError(
            f"invalid slug {slug!r}: use lowercase letters, digits and hyphens, e.g. 'daily' "
            "or 'special-offers' (at most 64 characters)"
        )
    return slug


def create_newsletter(
    db: Session,
    slug: str,
    name: str,
    *,
    description: str = "",
    kind: NewsletterKind = NewsletterKind.DIGEST,
    frequency: Frequency = Frequency.DAILY,
    categories: Sequence[str] = (),
) -> Newsletter:
    """Add a newsletter; NewsletterError for a bad or taken slug or an empty name."""
    validate_slug(slug)
    if not name.strip():
        raise NewsletterError("a newsletter needs a name, e.g. --name 'Daily digest'")
    if len(name.strip()) > 200:
        raise NewsletterError("the name is longer than 200 characters")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        # The name goes into every mail's List-Id header: a line break there is an injection.
        raise NewsletterError("the name must be one line without control characters")
    if db.scalar(select(Newsletter.id).where(Newsletter.slug == slug)) is not None:
        raise NewsletterError(f"a newsletter with slug {slug!r} already exists")
    position = db.scalar(select(func.coalesce(func.max(Newsletter.position), 0))) or 0
    row = Newsletter(
        slug=slug,
        name=name.strip(),
        description=description.strip(),
        kind=kind,
        default_frequency=frequency,
        categories=list(dict.fromkeys(c for c in categories if c)),
        position=position + 1,
    )
    db.add(row)
    try:
        db.flush()
    except IntegrityError:  # created by someone else in the meantime
        db.rollback()
        raise NewsletterError(f"a newsletter with slug {slug!r} already exists") from None
    return row


def newsletter_rows(db: Session) -> list[NewsletterRow]:
    """Every newsletter in display order, with its count of confirmed, active readers."""
    active = (
        select(Subscription.newsletter_id, func.count().label("n"))
        .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
        .where(
            Subscription.status == SubscriptionStatus.ACTIVE,
            Subscriber.status == SubscriberStatus.ACTIVE,
        )
        .group_by(Subscription.newsletter_id)
        .subquery()
    )
    query = (
        select(Newsletter, func.coalesce(active.c.n, 0))
        .outerjoin(active, active.c.newsletter_id == Newsletter.id)
        .order_by(Newsletter.position, Newsletter.id)
    )
    return [
        NewsletterRow(n.slug, n.name, n.kind.value, n.default_frequency.value, int(count))
        for n, count in db.execute(query)
    ]


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
    try:
        with session() as db:
            row = create_newsletter(
                db,
                slug,
                name,
                description=description,
                kind=NewsletterKind(kind),
                frequency=Frequency(frequency),
                categories=_categories(categories),
            )
            summary = f"Created newsletter {row.slug!r} ({row.name}, {kind}"
    except NewsletterError as exc:
        fail(str(exc))
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
