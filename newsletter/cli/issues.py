"""``newsletter issues`` (list, show, send, pause, resume, cancel, resend-failed, hold, release,
test) and ``newsletter campaigns create``: one send of a newsletter, from the terminal."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from flask.cli import AppGroup

from newsletter.cli.common import ID, created, fail, run, script_output, settings, table
from newsletter.content.sanitize import truncate_words
from newsletter.issues import lifecycle, presend
from newsletter.issues.progress import Progress, progress
from newsletter.issues.summary import IssueSummary, describe
from newsletter.web import task_queue

FINAL_OK = {"sent", "skipped"}
FINAL_BAD = {"failed", "cancelled"}
STALL_HINT_SECONDS = 20.0


def progress_line(p: Progress) -> str:
    """One line of progress: counts, rate, ETA and why it stopped, if it did."""
    sent = f"{p.sent}/{p.total} sent" if p.fanout_complete else f"{p.sent} sent"
    parts = [f"issue {p.issue_id}: {p.status}", sent]
    if p.status == "sending" and not p.fanout_complete:
        parts.append("still listing readers")
    parts += [f"{p.failed} failed", f"{p.skipped} skipped"]
    if p.hard_bounces:
        parts.append(f"{p.hard_bounces} hard-bounced")
    if p.complaints:
        parts.append(f"{p.complaints} spam complaint{'s' if p.complaints > 1 else ''}")
    if p.waiting:
        parts.append(f"{p.waiting} waiting for their local time")
    if p.status == "sending" and p.rate_per_second:
        parts.append(f"{p.rate_per_second:.1f}/s")
    if p.eta_seconds is not None:
        parts.append(f"ETA {p.eta_seconds}s")
    line = ", ".join(parts)
    # A finished send's reason only repeats the counts.
    return f"{line} ({p.reason})" if p.reason and p.status != "sent" else line


def wait_until_done(issue_id: int, interval: float = 1.0, *, quiet: bool = False) -> None:
    """Print progress lines until the issue finishes; exit 1 unless it was sent (or skipped).

    With ``quiet`` only a failure is printed (on stderr): the exit status says the rest.
    """
    last = ""
    changed = time.monotonic()
    hinted = False
    try:
        while True:
            p = run(progress, issue_id)
            line = progress_line(p)
            if line != last:
                if not quiet:
                    click.echo(line)
                last, changed = line, time.monotonic()
            elif not hinted and time.monotonic() - changed > STALL_HINT_SECONDS:
                click.echo(
                    "No progress for a while: is a worker running (`newsletter worker`, or "
                    "`newsletter dev` locally)? Check with `newsletter ping`.",
                    err=True,
                )
                hinted = True
            if p.status in FINAL_OK:
                return
            if p.status in FINAL_BAD:
                fail(f"issue {issue_id} {p.status}: {p.reason or 'see the deliveries'}")
            if p.status == "paused":
                fail(
                    f"issue {issue_id} is paused ({p.reason}); continue it with "
                    f"`newsletter issues resume {issue_id}`"
                )
            time.sleep(interval)
    except KeyboardInterrupt:
        click.echo(
            f"\nStopped waiting; the send goes on. Follow it with `newsletter issues show "
            f"{issue_id}`.",
            err=True,
        )
        raise SystemExit(130) from None


def _short(text: str, width: int = 50) -> str:
    """A subject cut to fit a table column."""
    return truncate_words(text, width)


def _when(value: datetime | None) -> str:
    """A time for a table cell, to the minute (UTC)."""
    return value.strftime("%Y-%m-%d %H:%M") if value else ""


# --- issues --------------------------------------------------------------------------------------


@click.group("issues", cls=AppGroup)
def issues_group() -> None:
    """Follow and steer sends: list, show, send, pause, resume, cancel, resend to failed."""


@issues_group.command("list")
@click.option("--newsletter", "slug", default=None, help="Only this newsletter (slug).")
@click.option("--status", default=None, help="Only issues in this state, e.g. sending.")
@click.option("--limit", type=click.IntRange(1, 500), default=20, show_default=True)
def list_command(slug: str | None, status: str | None, limit: int) -> None:
    """Newest issues first."""

    def rows(db: Any) -> list[IssueSummary]:
        return [
            describe(i)
            for i in lifecycle.list_issues(db, newsletter=slug, status=status, limit=limit)
        ]

    found = run(rows)
    if not found:
        click.echo("No issues yet. Start one with `newsletter digest send --newsletter SLUG`.")
        return
    click.echo(
        table(
            ["id", "newsletter", "kind", "status", "subject", "recipients", "created (UTC)"],
            [
                (
                    i.id,
                    i.newsletter,
                    i.kind,
                    i.status + (" (held)" if i.held else ""),
                    _short(i.subject),
                    i.total or "",
                    _when(i.created_at),
                )
                for i in found
            ],
        )
    )


@issues_group.command("show")
@click.argument("issue_id", metavar="ID", type=ID)
def show_command(issue_id: int) -> None:
    """Everything about one issue, with its live progress."""

    def read(db: Any) -> tuple[IssueSummary, Progress]:
        issue = lifecycle.get_issue(db, issue_id)
        return describe(issue), progress(db, issue_id)

    info, p = run(read)
    fields = [
        ("issue", info.id),
        ("newsletter", info.newsletter),
        ("kind", info.kind),
        ("status", info.status + (" (held by an editor)" if info.held else "")),
        ("reason", info.reason),
        ("subject", info.subject),
        ("frequency", info.frequency),
        ("posts", ", ".join(str(p_) for p_ in info.post_ids)),
        ("send at", _when(info.send_at)),
        ("local time", info.local_send_time),
        ("started", _when(info.started_at)),
        ("finished", _when(info.finished_at)),
    ]
    for name, value in fields:
        if value not in (None, ""):
            click.echo(f"{name + ':':<12}{value}")
    click.echo(progress_line(p))


@issues_group.command("send")
@click.argument("issue_id", metavar="ID", type=ID)
@click.option("--at", "send_at", default=None, help="Send later: ISO time with offset.")
@click.option("--wait", is_flag=True, help="Print progress until it is done.")
@click.option(
    "--override-check",
    "override",
    default="",
    metavar="REASON",
    help="Send even if the pre-send check fails; the reason is recorded on the issue.",
)
def send_command(issue_id: int, send_at: str | None, wait: bool, override: str) -> None:
    """Send a draft or scheduled issue now (or schedule it with --at).

    The pre-send check (`issues check`) runs first; with NEWSLETTER_PRESEND_CHECK=block (the
    production default) a failure stops the send unless --override-check gives a reason.
    """
    if send_at is not None:
        when = _parse_time(send_at)
        run(lifecycle.schedule, issue_id, when)
        click.echo(f"Issue {issue_id} scheduled for {when.isoformat()}.")
        return
    issue = run(lifecycle.send, settings(), issue_id, task_queue(), override=override)
    if issue.status_reason:
        click.echo(f"Warning: {issue.status_reason}", err=True)
    click.echo(f"Issue {issue_id} is sending.")
    if wait:
        wait_until_done(issue_id)


@issues_group.command("check")
@click.argument("issue_id", metavar="ID", type=ID)
def check_command(issue_id: int) -> None:
    """Check one message of an issue against the sending rules, as a send does first.

    DKIM (valid, covering List-Unsubscribe), the one-click unsubscribe URL (POST: 200, no
    redirect or cookie), List-Id, postal address, both MIME parts, Gmail's 102 kB clipping
    limit, links to our sites, template code left over. Exit 1 when a check fails. Changes
    nothing: the message checked is a test copy whose links belong to nobody.
    """

    def check(db: Any) -> presend.Report:
        lifecycle.get_issue(db, issue_id)  # IssueNotFound → "Error: …"
        return presend.check_issue(db, settings(), issue_id)

    report = run(check)
    width = max(len(f.name) for f in report.findings)
    for finding in report.findings:
        click.echo(f"{finding.mark:<5} {finding.name:<{width}}  {finding.detail}")
    if not report.passed:
        fail(f"issue {issue_id} would not be sent: {len(report.failures)} check(s) failed")
    click.echo(f"Issue {issue_id} passes the pre-send check.")


def _parse_time(raw: str) -> datetime:
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        fail(f"{raw!r} is not an ISO time such as 2030-01-01T08:00:00+01:00")
    if value.tzinfo is None:
        fail(f"{raw!r} needs a time zone offset, such as +01:00 or Z")
    try:
        return value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+14:00 is before the first UTC day
        fail(f"{raw!r} is out of range")


@issues_group.command("pause")
@click.argument("issue_id", metavar="ID", type=ID)
def pause_command(issue_id: int) -> None:
    """Stop a send after the mail in flight; resume continues it."""
    run(lifecycle.pause, issue_id)
    click.echo(f"Issue {issue_id} paused. Continue with `newsletter issues resume {issue_id}`.")


@issues_group.command("resume")
@click.argument("issue_id", metavar="ID", type=ID)
@click.option("--wait", is_flag=True, help="Print progress until it is done.")
def resume_command(issue_id: int, wait: bool) -> None:
    """Continue a paused (or failed) send where it stopped."""
    run(lifecycle.resume, settings(), issue_id, task_queue())
    click.echo(f"Issue {issue_id} is sending again.")
    if wait:
        wait_until_done(issue_id)


@issues_group.command("cancel")
@click.argument("issue_id", metavar="ID", type=ID)
def cancel_command(issue_id: int) -> None:
    """Stop for good; readers not mailed yet get nothing."""
    run(lifecycle.cancel, issue_id)
    click.echo(f"Issue {issue_id} cancelled.")


@issues_group.command("resend-failed")
@click.argument("issue_id", metavar="ID", type=ID)
@click.option("--wait", is_flag=True, help="Print progress until it is done.")
def resend_failed_command(issue_id: int, wait: bool) -> None:
    """Send again to the readers whose delivery failed (never to bounced or departed ones)."""
    result = run(lifecycle.resend_failed, settings(), issue_id, task_queue())
    note = f" ({result.not_mailable} can no longer be mailed)" if result.not_mailable else ""
    if not result.requeued:
        click.echo(f"Nothing to resend for issue {issue_id}{note}.")
        return
    click.echo(f"Resending issue {issue_id} to {result.requeued} readers{note}.")
    if wait and result.issue.status == lifecycle.S.SENDING:
        wait_until_done(issue_id)


@issues_group.command("hold")
@click.argument("issue_id", metavar="ID", type=ID)
def hold_command(issue_id: int) -> None:
    """Keep a scheduled issue from going out (the editor's veto)."""
    run(lifecycle.hold, issue_id)
    click.echo(f"Issue {issue_id} held. Release it with `newsletter issues release {issue_id}`.")


@issues_group.command("release")
@click.argument("issue_id", metavar="ID", type=ID)
def release_command(issue_id: int) -> None:
    """Let a held issue go out at its time (at once if that has passed)."""
    run(lifecycle.hold, issue_id, False)
    click.echo(f"Issue {issue_id} released.")


@issues_group.command("test")
@click.argument("issue_id", metavar="ID", type=ID)
@click.option("--to", "to", multiple=True, required=True, help="Address (repeatable).")
def test_command(issue_id: int, to: tuple[str, ...]) -> None:
    """Send the issue to a few addresses now, subject prefixed [TEST]; nothing is recorded."""
    results = run(lifecycle.test_send, settings(), issue_id, list(to))
    report_test(results)


def report_test(results: list[lifecycle.TestResult]) -> None:
    """Print what the SMTP server said per address; exit 1 if any was refused."""
    for r in results:
        click.echo(f"{r.address}: {'sent' if r.ok else 'refused'} ({r.answer})")
    if not all(r.ok for r in results):
        fail("some test mails were refused")


# --- campaigns -----------------------------------------------------------------------------------


@click.group("campaigns", cls=AppGroup)
def campaigns_group() -> None:
    """Write one-off mailings (offers, announcements) for a newsletter."""


@campaigns_group.command("create")
@click.option("--newsletter", "slug", required=True, help="The newsletter's slug, e.g. offers.")
@click.option("--subject", required=True)
@click.option("--html", "html_file", type=click.Path(dir_okay=False, path_type=Path), required=True)
@click.option("--text", "text_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--preheader", default="", help="Inbox preview text.")
@script_output
def create_campaign_command(
    slug: str,
    subject: str,
    html_file: Path,
    text_file: Path | None,
    preheader: str,
    quiet: bool,
    as_json: bool,
) -> None:
    """Create a campaign as a draft from an HTML file (and optionally a text file)."""
    html = _read(html_file)
    text = _read(text_file) if text_file is not None else ""

    def create(db: Any) -> IssueSummary:
        newsletter = lifecycle.find_newsletter(db, slug)
        issue = lifecycle.create_campaign(
            db,
            settings(),
            newsletter,
            subject=subject,
            body_html=html,
            body_text=text,
            preheader=preheader,
        )
        return describe(issue)

    issue = run(create)
    created(
        "Issue",
        issue.id,
        f"{issue.subject!r}, a draft",
        issue.to_json(),
        quiet=quiet,
        as_json=as_json,
    )
    if not (quiet or as_json):
        click.echo(
            f"Test it with `newsletter issues test {issue.id} --to you@example.com`, send it "
            f"with `newsletter issues send {issue.id}`.",
            err=True,
        )


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        fail(f"{path}: no such file")
    except UnicodeDecodeError:
        fail(f"{path}: not UTF-8 text")
    except OSError as exc:
        fail(f"{path}: {exc.strerror}")


commands = [issues_group, campaigns_group]
