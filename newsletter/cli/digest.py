"""``newsletter digest preview|send|test``: the next digest of a newsletter, from the terminal."""

from __future__ import annotations

from typing import Any

import click
from flask.cli import AppGroup

from newsletter.cli import issues
from newsletter.cli.common import created, domain_session, fail, run, script_output, settings
from newsletter.issues import lifecycle, rendering
from newsletter.issues.summary import IssueSummary, describe
from newsletter.store.models import Frequency, NewsletterKind
from newsletter.web import task_queue

FREQUENCY = click.Choice([f.value for f in Frequency])


def _cohort(db: Any, slug: str, frequency: str | None) -> Frequency | None:
    """The frequency asked for, or the newsletter's default for a digest."""
    newsletter = lifecycle.find_newsletter(db, slug)
    if frequency:
        return Frequency(frequency)
    if NewsletterKind(newsletter.kind) is NewsletterKind.DIGEST:
        return Frequency(newsletter.default_frequency)
    return None


@click.group("digest", cls=AppGroup)
def digest_group() -> None:
    """Preview, test and send a newsletter's next digest."""


@digest_group.command("preview")
@click.option("--newsletter", "slug", required=True, help="The newsletter's slug.")
@click.option("--frequency", type=FREQUENCY, default=None, help="Cohort [default: the list's].")
@click.option("--link", is_flag=True, help="Print a signed preview URL (valid one hour) instead.")
def preview_command(slug: str, frequency: str | None, link: bool) -> None:
    """Show the subject and text of what would be sent now; nothing is stored or sent."""

    with domain_session(LookupError, ValueError) as db:
        cohort = _cohort(db, slug, frequency)
        value = cohort.value if cohort is not None else None
        subject, _html, text = rendering.preview(db, settings(), slug, value)
        db.rollback()
    if link:
        click.echo(rendering.preview_url(settings(), slug, value))
        return
    click.echo(f"Subject: {subject}\n")
    click.echo(text)


@digest_group.command("send")
@click.option("--newsletter", "slug", required=True, help="The newsletter's slug.")
@click.option("--frequency", type=FREQUENCY, default=None, help="Cohort [default: the list's].")
@click.option("--wait", is_flag=True, help="Print progress until it is done; exit 1 if it fails.")
@script_output
def send_command(slug: str, frequency: str | None, wait: bool, quiet: bool, as_json: bool) -> None:
    """Plan the digest from the posts since the last one and send it now."""

    def plan(db: Any) -> IssueSummary:
        newsletter = lifecycle.find_newsletter(db, slug)
        issue = lifecycle.create_digest(
            db, settings(), newsletter, frequency=_cohort(db, slug, frequency)
        )
        db.commit()
        return describe(issue)

    issue = run(plan)
    posts = f"{len(issue.post_ids)} post" + ("" if len(issue.post_ids) == 1 else "s")
    summary = f"{issue.subject!r} ({posts})" if issue.status != "skipped" else "nothing to send"
    created("Issue", issue.id, summary, issue.to_json(), quiet=quiet, as_json=as_json)
    if issue.status == "skipped":
        if not (quiet or as_json):
            click.echo(f"Nothing to send: {issue.reason}.", err=True)
        return
    run(lifecycle.send, settings(), issue.id, task_queue())
    if wait:
        issues.wait_until_done(issue.id, quiet=quiet or as_json)
        return
    if not (quiet or as_json):
        click.echo(
            f"Issue {issue.id} is sending. Follow it with `newsletter issues show {issue.id}`.",
            err=True,
        )


@digest_group.command("test")
@click.option("--newsletter", "slug", required=True, help="The newsletter's slug.")
@click.option("--frequency", type=FREQUENCY, default=None, help="Cohort [default: the list's].")
@click.option("--to", "to", multiple=True, required=True, help="Address (repeatable).")
def test_command(slug: str, frequency: str | None, to: tuple[str, ...]) -> None:
    """Send the next digest to these addresses now, subject prefixed [TEST]; nothing is stored."""

    with domain_session() as db:
        newsletter = lifecycle.find_newsletter(db, slug)
        issue = lifecycle.create_digest(
            db, settings(), newsletter, frequency=_cohort(db, slug, frequency)
        )
        if issue.status == lifecycle.S.SKIPPED:
            fail(f"Nothing to test: {issue.status_reason}.")
        try:
            results = lifecycle.test_send(db, settings(), issue.id, list(to))
        finally:
            # The issue was only flushed to render it: roll it back, forget its rendering.
            db.rollback()
            rendering.clear_cache()
    issues.report_test(results)


commands = [digest_group]
