"""``newsletter subscribers``: list, show, import, export, unsubscribe, suppress and erase readers.

The commands parse and print; the rules are in ``newsletter.readers``: ``directory`` (list,
show), ``importing``, ``exporting`` and ``erasure`` (erase, unsubscribe, suppress).
"""

from __future__ import annotations

import getpass
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

import click
from flask.cli import AppGroup

from newsletter.cli.common import domain_session, fail, session, settings, table
from newsletter.readers.addresses import InvalidAddress, normalise
from newsletter.readers.consent import export_subscriber
from newsletter.readers.directory import (
    MAX_PAGE,
    ReaderFilter,
    count_readers,
    list_readers,
    reader_record,
)
from newsletter.readers.erasure import (
    ReaderNotFound,
    erase,
    erased_consents,
    find_reader,
    suppress_reader,
    unsubscribe_reader,
)
from newsletter.readers.exporting import write_csv
from newsletter.readers.importing import (
    ImportFileError,
    ImportMode,
    ImportReport,
    apply,
    enqueue_confirmations,
    preview,
)
from newsletter.readers.subscriptions import SubscriptionError
from newsletter.store.models import SubscriberStatus, SubscriptionStatus
from newsletter.web import mail_queue

# The errors of these commands that are the user's to fix: `Error: …` and exit 1.
READER_ERRORS = (ImportFileError, ReaderNotFound, SubscriptionError)
# How many problem rows an import prints (the totals count them all).
SHOWN_PROBLEMS = 20

STATUSES = [s.value for s in SubscriberStatus]
SUB_STATUSES = [s.value for s in SubscriptionStatus]


@click.group("subscribers", cls=AppGroup)
def subscribers_group() -> None:
    """Find, import, export and erase readers."""


def _address(raw: str) -> str:
    """A normalised address, or `Error: …` and exit 1."""
    try:
        return normalise(raw)
    except InvalidAddress as exc:
        fail(f"{raw!r}: {exc}")


def _filter(newsletter: str | None, status: str | None, search: str = "") -> ReaderFilter:
    """The filter of list and export: ``--status`` is the list's status with ``--newsletter``,
    the reader's overall status without."""
    if newsletter is not None and status is not None:
        if status not in SUB_STATUSES:
            raise click.BadParameter(
                f"with --newsletter the status is one of {', '.join(SUB_STATUSES)}",
                param_hint="--status",
            )
        return ReaderFilter(newsletter, SubscriptionStatus(status), None, search)
    return ReaderFilter(newsletter, None, SubscriberStatus(status) if status else None, search)


@subscribers_group.command("list")
@click.option("--newsletter", "newsletter", metavar="SLUG", help="Only readers of this list.")
@click.option(
    "--status",
    type=click.Choice(STATUSES),
    help="The reader's status; with --newsletter, the status on that list.",
)
@click.option("--search", default="", help="The start of the address or the name.")
@click.option("--limit", type=click.IntRange(1, MAX_PAGE), default=50, show_default=True)
@click.option("--after", type=click.IntRange(0), default=0, help="The last id of the page before.")
def list_command(
    newsletter: str | None, status: str | None, search: str, limit: int, after: int
) -> None:
    """List readers, a page at a time (the next page: --after the last id shown)."""
    f = _filter(newsletter, status, search)
    with domain_session(*READER_ERRORS) as db:
        page = list_readers(db, f, after=after, limit=limit)
        counts = count_readers(db, f)
    if not page.rows:
        click.echo("No readers match." if counts.total else "No readers yet.")
        return
    click.echo(
        table(
            ["id", "email", "name", "status", "newsletters"],
            [(r.id, r.email, r.name, r.status, " ".join(r.newsletters)) for r in page.rows],
        )
    )
    breakdown = counts.by_subscription_status or counts.by_status
    summary = ", ".join(f"{n} {s}" for s, n in breakdown.items() if n)
    click.echo(f"\n{counts.total} matching ({summary or 'none'}).")
    if page.next_after is not None:
        click.echo(f"More: add --after {page.next_after}")


@subscribers_group.command("show")
@click.argument("email")
def show_command(email: str) -> None:
    """Show a reader: lists, consent records, latest mails and reports."""
    address = _address(email)
    with session() as db:
        subscriber = find_reader_or_fail(db, address)
        record = reader_record(db, subscriber.id)
    assert record is not None
    _print_record(asdict(record))


def _nobody(db: Any, address: str) -> str:
    """No such reader, and whether the address was erased (its consent proof is kept)."""
    kept = erased_consents(db, address)
    if kept:
        return (
            f"no subscriber with address {address}: it was erased; "
            f"{len(kept)} pseudonymised consent record(s) kept"
        )
    return f"no subscriber with address {address}"


def find_reader_or_fail(db: Any, address: str) -> Any:
    """The reader with this address, or `Error: no subscriber …` and exit 1."""
    try:
        return find_reader(db, address)
    except ReaderNotFound:
        fail(_nobody(db, address))


def _print_record(record: dict[str, Any]) -> None:
    reader = record["reader"]
    click.echo(f"{reader['email']}  (id {reader['id']}, {reader['status']})")
    click.echo(f"name: {reader['name'] or '-'}   time zone: {reader['timezone']}")
    click.echo(f"signed up: {reader['created_at']}   confirmed: {reader['confirmed_at'] or '-'}")
    if record["suppression"]:
        click.echo(f"suppressed: {record['suppression']['reason']}")
    sections: list[tuple[str, list[str], list[list[Any]]]] = [
        (
            "Subscriptions",
            ["newsletter", "status", "frequency", "since", "confirmed"],
            [
                [s["newsletter"], s["status"], s["frequency"], s["created_at"], s["confirmed_at"]]
                for s in record["subscriptions"]
            ],
        ),
        (
            "Consent records",
            ["lists", "signed up", "ip", "confirmed", "source"],
            [
                [
                    ",".join(c["newsletter_slugs"]),
                    c["signup_at"],
                    c["signup_ip"],
                    c["confirmed_at"],
                    c["source"],
                ]
                for c in record["consent_records"]
            ],
        ),
        (
            "Latest deliveries",
            ["issue", "status", "sent", "answer"],
            [
                [d["issue_id"], d["status"], d["sent_at"], d["smtp_response"][:60]]
                for d in record["deliveries"]
            ],
        ),
        (
            "Bounces and complaints",
            ["issue", "kind", "status", "when"],
            [
                [e["issue_id"], e["kind"], e["status"], e["created_at"]]
                for e in record["feedback_events"]
            ],
        ),
    ]
    for title, headers, rows in sections:
        click.echo(f"\n{title}:")
        click.echo(table(headers, rows) if rows else "  none")


@subscribers_group.command("export-data")
@click.argument("email")
def export_data_command(email: str) -> None:
    """Print everything stored about EMAIL as JSON (a data subject access request)."""
    address = _address(email)
    with session() as db:
        data = export_subscriber(db, address)
        if data is None:
            fail(_nobody(db, address))
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


@subscribers_group.command("export")
@click.option("--newsletter", "newsletter", metavar="SLUG", help="Only readers of this list.")
@click.option(
    "--status",
    type=click.Choice(STATUSES),
    help="The reader's status; with --newsletter, the status on that list.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write to this file instead of standard output.",
)
def export_command(newsletter: str | None, status: str | None, output: Path | None) -> None:
    """Export readers as CSV: email, name, status, newsletters, subscribed_at, confirmed_at."""
    f = _filter(newsletter, status)
    with domain_session(*READER_ERRORS) as db:
        if output is None:
            write_csv(db, f, sys.stdout)
            return
        count = _export_to(db, f, output)
    click.echo(f"{count} readers written to {output}", err=True)


def _export_to(db: Any, f: ReaderFilter, output: Path) -> int:
    """Write the export to a file (UTF-8, the lines CSV wants), or `Error: …` if it cannot."""
    try:
        with output.open("w", encoding="utf-8", newline="") as out:
            return write_csv(db, f, out)
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror}")


@subscribers_group.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--newsletter", "newsletter", metavar="SLUG", required=True, help="The list.")
@click.option("--confirm-by-mail", is_flag=True, help="Send each new reader a confirmation mail.")
@click.option(
    "--consented",
    metavar="SOURCE",
    help="Record consent the readers already gave, and where (e.g. 'paper form, fair 2024').",
)
@click.option(
    "--dry-run", is_flag=True, help="Only check the file: print the report, store nothing."
)
def import_command(
    file: Path, newsletter: str, confirm_by_mail: bool, consented: str | None, dry_run: bool
) -> None:
    """Import readers from a CSV file with an 'email' column (optional: name, topics, frequency,
    timezone) into one list. Exactly one of --confirm-by-mail and --consented is required."""
    if confirm_by_mail == (consented is not None):
        fail("use exactly one of --confirm-by-mail and --consented SOURCE")
    if consented is not None and not consented.strip():
        fail("--consented needs its source: where and how the readers agreed")
    mode = ImportMode.CONFIRM_BY_MAIL if confirm_by_mail else ImportMode.CONSENTED
    if file.stat().st_size > settings().import_max_bytes:  # refused before reading a byte
        fail(
            f"{file} is larger than {settings().import_max_bytes // (1024 * 1024)} MB "
            "(NEWSLETTER_IMPORT_MAX_BYTES); split it into smaller files"
        )
    with domain_session(*READER_ERRORS) as db:
        with file.open("rb") as stream:
            report = preview(db, settings(), stream, newsletter)
        _print_report(report, sys.stdout)
        if not report.valid:
            fail("nothing to import: no row is valid")
        if dry_run:
            click.echo("Dry run: nothing stored.")
            return
        result = apply(
            db,
            settings(),
            report.valid,
            newsletter,
            mode,
            actor=_actor(),
            source=consented or "",
        )
        db.commit()
    queued = enqueue_confirmations(mail_queue(), result)
    click.echo(f"Imported {result.subscribed} readers ({result.created} new) into {newsletter}.")
    if result.skipped:
        click.echo(f"{len(result.skipped)} rows changed since the check and were left out.")
    if mode == ImportMode.CONFIRM_BY_MAIL:
        click.echo(f"{queued} confirmation mails queued; each joins when they click the link.")


def _print_report(report: ImportReport, out: TextIO) -> None:
    """The totals, the ignored columns and the first problems with their row numbers."""
    totals = report.totals
    click.echo(
        f"{len(report.rows)} rows: "
        + ", ".join(f"{n} {status}" for status, n in totals.items() if n or status == "ok"),
        file=out,
    )
    if report.unknown_columns:
        click.echo("Ignored columns: " + ", ".join(report.unknown_columns), file=out)
    problems = report.problems
    for row in problems[:SHOWN_PROBLEMS]:
        who = f" {row.email}:" if row.email else ""
        click.echo(f"  row {row.row}:{who} {row.status.value}: {row.reason}", file=out)
    if len(problems) > SHOWN_PROBLEMS:
        click.echo(f"  … and {len(problems) - SHOWN_PROBLEMS} more", file=out)


def _actor() -> str:
    """Who runs the import, as the consent records name them."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown user"
    return f"{user} (newsletter subscribers import)"


@subscribers_group.command("unsubscribe")
@click.argument("email")
@click.option("--newsletter", "newsletter", metavar="SLUG", help="Only from this list.")
def unsubscribe_command(email: str, newsletter: str | None) -> None:
    """Unsubscribe a reader from one list, or from every list."""
    address = _address(email)
    with domain_session(*READER_ERRORS) as db:
        left = unsubscribe_reader(db, find_reader_or_fail(db, address), newsletter)
    click.echo(f"{address} left {', '.join(left)}." if left else f"{address} was on no such list.")


@subscribers_group.command("suppress")
@click.argument("email")
@click.option("--detail", default="", help="Why (kept with the entry).")
def suppress_command(email: str, detail: str) -> None:
    """Never mail an address again (a reader is also unsubscribed from every list)."""
    address = _address(email)
    with domain_session(*READER_ERRORS) as db:
        row = suppress_reader(db, address, detail)
    click.echo(f"{address} is on the do-not-mail list ({row.reason}).")


@subscribers_group.command("erase")
@click.argument("email")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def erase_command(email: str, yes: bool) -> None:
    """Erase a reader (GDPR): their data goes; the suppression hash and a pseudonymised proof of
    their consent stay."""
    address = _address(email)
    with session() as db:
        find_reader_or_fail(db, address)
    # Asked outside any transaction: nothing is held open while the prompt waits.
    if not yes and not click.confirm(f"Erase {address} and everything stored about them?"):
        fail("nothing erased")
    with domain_session(*READER_ERRORS) as db:
        result = erase(db, find_reader_or_fail(db, address))
    click.echo(
        f"{address} erased: {result.subscriptions} subscriptions, {result.consent_records} "
        f"consent records, {result.deliveries} deliveries, {result.feedback_events} reports "
        f"deleted; {result.consents_kept} consent proofs kept without the address; "
        f"suppressed ({result.suppression_reason})."
    )


commands = [subscribers_group]
