"""Exporting a filtered set of readers as CSV, streamed in keyset batches (constant memory).

Columns: ``email, name, status, newsletters, subscribed_at, confirmed_at`` (``newsletters`` as
``slug:status`` separated by ``;``). Spreadsheets run a cell that starts with ``=``, ``+``, ``-``,
``@``, a tab or a carriage return as a formula, so such cells get a leading ``'`` (OWASP's advice
on CSV injection): a name like ``=HYPERLINK(...)`` arrives as text.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import datetime
from typing import TextIO

from sqlalchemy.orm import Session

from newsletter.readers.directory import MAX_PAGE, ReaderFilter, ReaderRow, list_readers

HEADER = ("email", "name", "status", "newsletters", "subscribed_at", "confirmed_at")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: str) -> str:
    """A cell a spreadsheet shows as text (a leading quote before a formula's first character)."""
    return "'" + value if value.startswith(FORMULA_START) else value


def _when(value: datetime | None) -> str:
    return value.isoformat() if value is not None else ""


def _cells(row: ReaderRow) -> list[str]:
    return [
        safe_cell(row.email),
        safe_cell(row.name),
        row.status,
        safe_cell(";".join(row.newsletters)),
        _when(row.created_at),
        _when(row.confirmed_at),
    ]


def iter_readers(session: Session, f: ReaderFilter, batch: int = MAX_PAGE) -> Iterator[ReaderRow]:
    """Every reader a filter matches, in id order, fetched a keyset page at a time."""
    after = 0
    while True:
        page = list_readers(session, f, after=after, limit=batch)
        yield from page.rows
        if page.next_after is None:
            return
        after = page.next_after


def iter_csv(session: Session, f: ReaderFilter) -> Iterator[str]:
    """The export as CSV text, a line at a time (for a streamed HTTP response)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(HEADER)
    for row in iter_readers(session, f):
        writer.writerow(_cells(row))
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    rest = buffer.getvalue()
    if rest:
        yield rest


def write_csv(session: Session, f: ReaderFilter, out: TextIO) -> int:
    """Write the export to a text stream; how many readers it holds."""
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(HEADER)
    count = 0
    for row in iter_readers(session, f):
        writer.writerow(_cells(row))
        count += 1
    return count
