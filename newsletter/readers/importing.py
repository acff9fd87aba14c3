"""Importing readers from a CSV file: a preview with a verdict per row, then all or nothing.

:func:`preview` reads the file and judges every row without writing: ok, an invalid address (with
email-validator's reason), a duplicate of an earlier row, already subscribed, suppressed (bounce,
complaint, an editor's or an erasure's entry: an erased reader comes back only by signing up
themselves), unsubscribed (they left this list: only they can rejoin it), or a missing or bad cell.
:func:`apply` writes the rows still ok in the caller's one transaction, in one of two modes:

* ``confirm-by-mail``: each reader gets a pending subscription and an unconfirmed consent record
  whose confirmation mail the caller enqueues after committing (:func:`enqueue_confirmations`).
  The mails go through the same task as a signup's, so they re-check the suppression list and
  the per-inbox daily cap; the per-IP limits of the public forms are the web's and do not apply.
* ``consented``: the editor vouches for consent given elsewhere; each reader is subscribed at
  once, with a confirmed consent record whose source names the given text, the importing actor
  and the time. No mail.

A file's name, topics and time zone are used for readers it creates; a reader we have keeps their
own (a name typed elsewhere waits in the consent record until they confirm, as a signup's does).

The file is bounded (``NEWSLETTER_IMPORT_MAX_BYTES``, ``NEWSLETTER_IMPORT_MAX_ROWS``, at most
:data:`MAX_COLUMNS` columns and :data:`MAX_CELL` characters a cell) and must be UTF-8 text (a
byte-order mark is fine) in CSV with a header row; anything else is one clear
:class:`ImportFileError`. Each row costs a bounded amount of work, duplicates are found with a
set and the database is asked in chunks, so the time is linear in the file's size.
"""

from __future__ import annotations

import csv
import enum
import io
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import BinaryIO

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.readers.addresses import InvalidAddress, email_hash, email_key, normalise
from newsletter.readers.choices import available_topics, valid_timezone
from newsletter.readers.consent import record_consent
from newsletter.readers.mail_queue import MailQueue
from newsletter.readers.subscriptions import SubscriptionError, UnknownNewsletter, clean_name
from newsletter.settings import Settings
from newsletter.store.db import utcnow
from newsletter.store.models import (
    ConsentRecord,
    Frequency,
    Newsletter,
    NewsletterKind,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
    Suppression,
)

COLUMNS = ("email", "name", "topics", "frequency", "timezone")
MAX_COLUMNS = 50
MAX_CELL = 1000
# Lookups per statement: well under every database's limit on bound parameters.
CHUNK = 500
SOURCE_MAX = 300  # the rest of ConsentRecord.source (500) names the actor and the time


class ImportFileError(ValueError):
    """The file as a whole cannot be imported; the message says why and what to do."""


class ImportMode(enum.StrEnum):
    """How an import's readers come to be subscribed."""

    CONFIRM_BY_MAIL = "confirm-by-mail"
    CONSENTED = "consented"


class RowStatus(enum.StrEnum):
    """The verdict on one row."""

    OK = "ok"
    INVALID = "invalid"  # the address, or another cell, cannot be used
    MISSING = "missing"  # no address in the email column
    DUPLICATE = "duplicate"  # the same address as an earlier row
    SUBSCRIBED = "subscribed"  # already a confirmed reader of this list
    UNSUBSCRIBED = "unsubscribed"  # left this list (or everything): only they can come back
    SUPPRESSED = "suppressed"  # on the do-not-mail list, or bounced


@dataclass(frozen=True)
class ImportRow:
    """One data row: its number in the file (the header is row 1), what it says, the verdict."""

    row: int
    email: str
    status: RowStatus = RowStatus.OK
    reason: str = ""
    name: str = ""
    topics: tuple[str, ...] = ()
    frequency: Frequency | None = None
    timezone: str = ""

    @property
    def ok(self) -> bool:
        """True when the row can be imported."""
        return self.status == RowStatus.OK


@dataclass(frozen=True)
class ImportReport:
    """The preview: every row's verdict, the columns we ignore, and totals by verdict."""

    newsletter_slug: str
    rows: tuple[ImportRow, ...]
    unknown_columns: tuple[str, ...] = ()

    @property
    def totals(self) -> dict[str, int]:
        """How many rows got each verdict (every verdict named, zeros included)."""
        counts = dict.fromkeys((s.value for s in RowStatus), 0)
        for row in self.rows:
            counts[row.status.value] += 1
        return counts

    @property
    def valid(self) -> list[ImportRow]:
        """The rows that can be imported."""
        return [r for r in self.rows if r.ok]

    @property
    def problems(self) -> list[ImportRow]:
        """The rows that cannot, in file order."""
        return [r for r in self.rows if not r.ok]


@dataclass(frozen=True)
class ImportResult:
    """What :func:`apply` wrote; ``consent_ids`` are the confirmation mails to enqueue."""

    mode: ImportMode
    created: int
    subscribed: int
    skipped: tuple[ImportRow, ...]
    consent_ids: tuple[int, ...] = field(default=())


# --- reading the file -----------------------------------------------------------------------------


def read_rows(data: bytes, settings: Settings) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """The header (case-folded, trimmed) and the data rows of a CSV file's bytes."""
    if len(data) > settings.import_max_bytes:
        raise ImportFileError(
            f"the file is larger than {settings.import_max_bytes // (1024 * 1024)} MB "
            f"(NEWSLETTER_IMPORT_MAX_BYTES); split it into smaller files"
        )
    if b"\x00" in data:
        raise ImportFileError("the file contains NUL bytes: it is not a CSV text file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ImportFileError(
            f"the file is not UTF-8 text (byte {exc.start + 1} is not UTF-8); "
            "save it as 'CSV UTF-8' and try again"
        ) from None
    reader = csv.reader(io.StringIO(text, newline=""), _dialect(text))
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise ImportFileError(f"the header row is not valid CSV: {exc}") from None
    if header is None or not any(cell.strip() for cell in header):
        raise ImportFileError("the file is empty: it needs a header row naming an 'email' column")
    if len(header) > MAX_COLUMNS:
        raise ImportFileError(f"the header has {len(header)} columns; at most {MAX_COLUMNS}")
    columns = [cell.strip().casefold() for cell in header]
    if "email" not in columns:
        raise ImportFileError(
            "the header row has no 'email' column; the columns we read are " + ", ".join(COLUMNS)
        )
    return columns, _data_rows(reader, settings.import_max_rows)


def _dialect(text: str) -> type[csv.Dialect]:
    """Comma-separated, or semicolons or tabs when the header uses those and no comma (as
    spreadsheets in many locales save CSV)."""
    first = text.split("\n", 1)[0]
    if "," not in first and ";" in first:
        return _Semicolon
    if "," not in first and "\t" in first:
        return csv.excel_tab
    return csv.excel


class _Semicolon(csv.excel):
    delimiter = ";"


def _data_rows(reader: Iterator[list[str]], max_rows: int) -> Iterator[tuple[int, list[str]]]:
    """The data rows with their record number (the header is 1), blank lines skipped but
    counted; an ImportFileError past the row limit or at bad CSV."""
    count = 0
    row_number = 1
    while True:
        row_number += 1
        try:
            row = next(reader, None)
        except csv.Error as exc:
            raise ImportFileError(f"row {row_number} is not valid CSV: {exc}") from None
        if row is None:
            return
        if not any(cell.strip() for cell in row):
            continue
        count += 1
        if count > max_rows:
            raise ImportFileError(
                f"the file has more than {max_rows} rows (NEWSLETTER_IMPORT_MAX_ROWS); "
                "split it into smaller files"
            )
        yield row_number, row


# --- judging the rows -----------------------------------------------------------------------------


def find_newsletter(session: Session, slug: str) -> Newsletter:
    """The list an import is for, or :class:`UnknownNewsletter`."""
    newsletter = session.scalar(select(Newsletter).where(Newsletter.slug == slug))
    if newsletter is None:
        raise UnknownNewsletter(f"no newsletter with slug {slug!r}")
    return newsletter


def preview(
    session: Session, settings: Settings, stream: BinaryIO, newsletter_slug: str
) -> ImportReport:
    """Judge every row of a CSV file for an import into one list; writes nothing."""
    newsletter = find_newsletter(session, newsletter_slug)
    data = stream.read(settings.import_max_bytes + 1)
    columns, rows = read_rows(data, settings)
    unknown = tuple(dict.fromkeys(c for c in columns if c and c not in COLUMNS))
    topics = set(available_topics(session))
    judged = _mark_duplicates(
        [_judge_cells(number, columns, cells, topics) for number, cells in rows]
    )
    return ImportReport(
        newsletter.slug, tuple(check_database(session, newsletter, judged)), unknown
    )


def _mark_duplicates(rows: Sequence[ImportRow]) -> list[ImportRow]:
    """The rows, each ok one whose address an earlier row has marked duplicate (a set: linear)."""
    first_row: dict[str, int] = {}  # address key -> the row it was first seen in
    out: list[ImportRow] = []
    for row in rows:
        if row.ok:
            key = email_key(row.email)
            if key in first_row:
                row = replace(
                    row, status=RowStatus.DUPLICATE, reason=f"same address as row {first_row[key]}"
                )
            else:
                first_row[key] = row.row
        out.append(row)
    return out


def _judge_cells(number: int, columns: list[str], cells: list[str], topics: set[str]) -> ImportRow:
    """One row's verdict from its own cells (no database)."""
    if len(cells) > len(columns) and any(c.strip() for c in cells[len(columns) :]):
        return ImportRow(
            number, "", RowStatus.INVALID, f"{len(cells)} cells, but the header has {len(columns)}"
        )
    values = {c: cells[i].strip() for i, c in enumerate(columns) if i < len(cells) and c}
    raw = values.get("email", "")
    if any(len(v) > MAX_CELL for v in values.values()):
        return ImportRow(number, raw[:80], RowStatus.INVALID, f"a cell longer than {MAX_CELL}")
    if not raw:
        return ImportRow(number, "", RowStatus.MISSING, "no address in the email column")
    try:
        address = normalise(raw)
    except InvalidAddress as exc:
        return ImportRow(number, raw, RowStatus.INVALID, str(exc))
    try:
        name = clean_name(values.get("name", ""))
    except SubscriptionError as exc:
        return ImportRow(number, address, RowStatus.INVALID, f"name: {exc}")
    wanted = tuple(
        dict.fromkeys(t.strip() for t in values.get("topics", "").split(";") if t.strip())
    )
    unknown = [t for t in wanted if t not in topics]
    if unknown:
        return ImportRow(number, address, RowStatus.INVALID, f"no topic called {unknown[0]!r}")
    frequency_cell = values.get("frequency", "").casefold()
    if frequency_cell and frequency_cell not in {f.value for f in Frequency}:
        return ImportRow(
            number, address, RowStatus.INVALID, "frequency must be 'daily', 'weekly' or empty"
        )
    zone = values.get("timezone", "")
    if zone and not valid_timezone(zone):
        return ImportRow(number, address, RowStatus.INVALID, f"no time zone called {zone!r}")
    return ImportRow(
        number,
        address,
        name=name,
        topics=wanted,
        frequency=Frequency(frequency_cell) if frequency_cell else None,
        timezone=zone,
    )


def check_database(
    session: Session, newsletter: Newsletter, rows: Sequence[ImportRow]
) -> list[ImportRow]:
    """The verdicts again, with what the database knows: suppressed, bounced, subscribed, left."""
    ok = [r for r in rows if r.ok]
    suppressed = _suppressed(session, (email_hash(r.email) for r in ok))
    readers = _readers(session, newsletter, [email_key(r.email) for r in ok])
    out: list[ImportRow] = []
    for row in rows:
        if row.ok:
            row = _against_database(row, suppressed, readers)
        out.append(row)
    return out


def _against_database(
    row: ImportRow,
    suppressed: dict[str, str],
    readers: dict[str, tuple[Subscriber, Subscription | None]],
) -> ImportRow:
    """One ok row's verdict given the suppressions and readers found."""
    reason = suppressed.get(email_hash(row.email))
    if reason is not None:
        return replace(
            row, status=RowStatus.SUPPRESSED, reason=f"on the do-not-mail list ({reason})"
        )
    found = readers.get(email_key(row.email))
    if found is None:
        return row
    subscriber, sub = found
    if subscriber.status == SubscriberStatus.BOUNCED:
        return replace(row, status=RowStatus.SUPPRESSED, reason="the address bounced")
    if sub is not None and sub.status == SubscriptionStatus.ACTIVE:
        if subscriber.status == SubscriberStatus.ACTIVE:
            return replace(row, status=RowStatus.SUBSCRIBED, reason="already subscribed")
        return replace(row, status=RowStatus.UNSUBSCRIBED, reason="left every list")
    if sub is not None and sub.status == SubscriptionStatus.UNSUBSCRIBED:
        return replace(row, status=RowStatus.UNSUBSCRIBED, reason="left this list")
    if subscriber.status == SubscriberStatus.UNSUBSCRIBED:
        return replace(row, status=RowStatus.UNSUBSCRIBED, reason="left every list")
    return row


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), CHUNK):
        yield items[start : start + CHUNK]


def _suppressed(session: Session, hashes: Iterable[str]) -> dict[str, str]:
    """Suppression reasons by hash, for the hashes on the list."""
    found: dict[str, str] = {}
    for chunk in _chunks(list(hashes)):
        rows = session.execute(
            select(Suppression.email_hash, Suppression.reason).where(
                Suppression.email_hash.in_(chunk)
            )
        )
        found.update((h, reason) for h, reason in rows)
    return found


def _readers(
    session: Session, newsletter: Newsletter, keys: Sequence[str]
) -> dict[str, tuple[Subscriber, Subscription | None]]:
    """The readers we have among these address keys, with their subscription to the list."""
    found: dict[str, tuple[Subscriber, Subscription | None]] = {}
    for chunk in _chunks(keys):
        rows = session.execute(
            select(Subscriber, Subscription)
            .outerjoin(
                Subscription,
                (Subscription.subscriber_id == Subscriber.id)
                & (Subscription.newsletter_id == newsletter.id),
            )
            .where(Subscriber.email_key.in_(chunk))
        )
        found.update((s.email_key, (s, sub)) for s, sub in rows)
    return found


# --- writing --------------------------------------------------------------------------------------


def apply(
    session: Session,
    settings: Settings,
    rows: Sequence[ImportRow],
    newsletter_slug: str,
    mode: ImportMode,
    *,
    actor: str,
    source: str = "",
    via: str = "import",
    now: datetime | None = None,
) -> ImportResult:
    """Import the ok rows (re-checked against the database now) in the caller's transaction.

    ``source`` is required for ``consented``: where and how the readers gave their consent;
    ``via`` names the channel in the consent records (the API adds single readers). The caller
    commits, then (``confirm-by-mail``) calls :func:`enqueue_confirmations`; on any error
    it rolls back, so nothing of the import is stored.
    """
    now = now or utcnow()
    source = " ".join(source.split())
    if mode == ImportMode.CONSENTED and not source:
        raise ImportFileError(
            "recording existing consent needs its source, e.g. 'paper form at the 2024 fair'"
        )
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in actor + source):
        raise ImportFileError("the source and actor must be one line without control characters")
    newsletter = find_newsletter(session, newsletter_slug)
    # Rows given to apply need not come from a preview: duplicates are refused here too.
    checked = check_database(session, newsletter, _mark_duplicates([r for r in rows if r.ok]))
    todo = [r for r in checked if r.ok]
    readers = _readers(session, newsletter, [email_key(r.email) for r in todo])
    # New readers first, in one flush (one batched INSERT), so the rest can name their ids.
    new = {
        email_key(r.email): _new_reader(r, mode, now)
        for r in todo
        if email_key(r.email) not in readers
    }
    session.add_all(new.values())
    session.flush()
    records: list[ConsentRecord] = []
    for row in todo:
        key = email_key(row.email)
        subscriber, sub = readers.get(key) or (new[key], None)
        records.append(
            _subscribe(
                session, settings, newsletter, subscriber, sub, row, mode, now, actor, source, via
            )
        )
    session.flush()
    consent_ids = [r.id for r in records]
    created = len(new)
    return ImportResult(
        mode=mode,
        created=created,
        subscribed=len(todo),
        skipped=tuple(r for r in checked if not r.ok),
        consent_ids=tuple(consent_ids) if mode == ImportMode.CONFIRM_BY_MAIL else (),
    )


def _new_reader(row: ImportRow, mode: ImportMode, now: datetime) -> Subscriber:
    """A reader for an address we do not hold yet (pending until confirmed, by mail or not)."""
    consented = mode == ImportMode.CONSENTED
    return Subscriber(
        email=row.email,
        email_key=email_key(row.email),
        # The name of a reader who confirms by mail waits in the consent record, as a signup's.
        name=row.name if consented else "",
        status=SubscriberStatus.ACTIVE if consented else SubscriberStatus.PENDING,
        timezone=row.timezone or "UTC",
        topics=sorted(row.topics, key=str.casefold),
        created_at=now,
        confirmed_at=now if consented else None,
    )


def _subscribe(
    session: Session,
    settings: Settings,
    newsletter: Newsletter,
    subscriber: Subscriber,
    sub: Subscription | None,
    row: ImportRow,
    mode: ImportMode,
    now: datetime,
    actor: str,
    source: str,
    via: str,
) -> ConsentRecord:
    """The reader's subscription to the list (pending or active) and its consent record (both
    flushed by the caller)."""
    consented = mode == ImportMode.CONSENTED
    if sub is None:
        sub = Subscription(subscriber_id=subscriber.id, newsletter_id=newsletter.id, created_at=now)
        session.add(sub)
        sub.frequency = newsletter.default_frequency
    if row.frequency is not None and newsletter.kind == NewsletterKind.DIGEST:
        sub.frequency = row.frequency
    if consented:
        sub.status = SubscriptionStatus.ACTIVE
        sub.confirmed_at = sub.confirmed_at or now
        sub.unsubscribed_at = None
        subscriber.status = SubscriberStatus.ACTIVE
        subscriber.confirmed_at = subscriber.confirmed_at or now
        if not subscriber.name and row.name:
            subscriber.name = row.name
    else:
        sub.status = SubscriptionStatus.PENDING
    stamp = now.strftime("%Y-%m-%d %H:%M UTC")
    if consented:
        origin = f"{source[:SOURCE_MAX]} (recorded by {actor[:80]} on {via}, {stamp})"
        text = f"Consent given before the {via}, as recorded by {actor[:80]}: {source}"
    else:
        origin = f"{via} by {actor[:80]}, {stamp}; consent by the confirmation mail"
        text = "Imported; subscribed only after confirming by the link in the mail."
    return record_consent(
        session,
        subscriber,
        newsletter_slugs=[newsletter.slug],
        version=settings.consent_version if not consented else "import",
        text=text,
        source=origin,
        now=now,
        confirmed=consented,
        name="" if consented else row.name,
        flush=False,
    )


def enqueue_confirmations(queue: MailQueue, result: ImportResult) -> int:
    """Queue the confirmation mails of a committed ``confirm-by-mail`` import; how many."""
    for consent_id in result.consent_ids:
        queue.send_confirmation(consent_id)
    return len(result.consent_ids)
