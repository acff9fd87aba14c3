"""``newsletter feeds``: the site's RSS/Atom/JSON feeds the digests are built from."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import click
from flask.cli import AppGroup

from newsletter.cli.common import domain_session, fail, session, settings, table
from newsletter.content.feeds import (
    FeedError,
    add_feed,
    ingest_due_feeds,
    ingest_source,
    list_feeds,
    remove_feed,
)
from newsletter.settings import redact_url


@contextmanager
def _quiet_feed_log() -> Iterator[None]:
    """Hold back the feed warnings the worker logs: the command prints every result itself."""
    logger = logging.getLogger("newsletter.content.feeds")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _when(value: datetime | None) -> str:
    """A UTC time for a table cell."""
    return value.strftime("%Y-%m-%d %H:%M") if value else "-"


@click.group("feeds", cls=AppGroup)
def feeds_group() -> None:
    """Add, list, remove and ingest the feeds posts come from."""


@feeds_group.command("add")
@click.argument("source", metavar="URL_OR_PATH")
def add_command(source: str) -> None:
    """Register a feed (an http(s) URL or a local file) to ingest periodically."""
    with domain_session() as db:
        feed = add_feed(db, source)
        feed_id, url = feed.id, feed.url
    minutes = settings().feed_interval_minutes
    click.echo(
        f"Feed {feed_id} added: {redact_url(url)}\n"
        f"The worker fetches it within {minutes} minutes; to fetch it now run: "
        "newsletter feeds ingest"
    )


@feeds_group.command("list")
def list_command() -> None:
    """Show every feed with its last fetch, next fetch and last error."""
    with session() as db:
        rows = [
            (
                f.id,
                redact_url(f.url),
                "yes" if f.enabled else "no",
                _when(f.last_fetched_at),
                _when(f.next_fetch_at) if f.next_fetch_at else "now",
                f.error_count,
                (f.last_error or "")[:80],
            )
            for f in list_feeds(db)
        ]
    if not rows:
        click.echo(
            "No feeds yet. Add one with: newsletter feeds add URL "
            "(or set NEWSLETTER_FEEDS=url1,url2)"
        )
        return
    click.echo(
        table(
            ["id", "url", "enabled", "fetched (UTC)", "next (UTC)", "errors", "last error"],
            rows,
        )
    )


@feeds_group.command("remove")
@click.argument("key", metavar="ID_OR_URL")
def remove_command(key: str) -> None:
    """Stop ingesting a feed (its posts are kept)."""
    with session() as db:
        removed = remove_feed(db, key)
    if not removed:
        fail(f"no feed {key!r}; see `newsletter feeds list`")
    click.echo(f"Feed {key} removed; its posts are kept.")


@feeds_group.command("ingest")
@click.argument("source", metavar="[URL_OR_PATH]", required=False)
@click.option(
    "--force", is_flag=True, help="Fetch in full even if the server says nothing changed."
)
def ingest_command(source: str | None, force: bool) -> None:
    """Ingest one feed now, or (without an argument) every feed that is due.

    A feed given here is also registered, so the worker keeps it up to date afterwards
    (`newsletter feeds remove` undoes that). Exits non-zero when a feed could not be fetched
    or read; the other feeds are still ingested.
    """
    config = settings()
    if force and source is None:
        fail("--force applies to one feed: newsletter feeds ingest --force URL_OR_PATH")
    if source is not None:
        try:
            with session() as db, _quiet_feed_log():
                result = ingest_source(db, config, source, force=force)
                if not result.ok and result.new_feed:
                    # Raised inside the session: the new feed is rolled back, not kept.
                    fail(f"{result.describe()}\nThe feed was not added; fix it and try again.")
        except FeedError as exc:
            fail(str(exc))
        if not result.ok:
            fail(result.describe())
        click.echo(result.describe())
        return
    with session() as db, _quiet_feed_log():
        results = ingest_due_feeds(db, config)
    if not results:
        click.echo("No feed is due. Add one with `newsletter feeds add URL`, or see `feeds list`.")
        return
    for result in results:
        click.echo(result.describe(), err=not result.ok)
    failed = [r for r in results if not r.ok]
    if failed:
        fail(f"{len(failed)} of {len(results)} feeds failed; they will be retried later")


commands = [feeds_group]
