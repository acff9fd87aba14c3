"""Importing readers from CSV: the per-row report, both modes at 1,000 rows, all or nothing, and
hostile files (huge cells, many columns, NUL bytes, binary, oversized) refused clearly.

On SQLite and PostgreSQL. Confirmation mails go through the app's real mail queue (its Celery
tasks run eagerly, in this process) to the capture transport.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import replace

import pytest
from flask import Flask
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from newsletter.readers.importing import (
    ImportFileError,
    ImportMode,
    ImportRow,
    RowStatus,
    apply,
    enqueue_confirmations,
    preview,
)
from newsletter.readers.subscriptions import UnknownNewsletter
from newsletter.readers.suppression import suppress
from newsletter.settings import Settings
from newsletter.store.models import (
    ConsentRecord,
    Frequency,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
)
from tests.support.readers import (
    Lists,
    add_subscriber,
    confirm_signup,
    link_in,
    mails,
    row_counts,
)
from tests.support.services import migrated_postgres_database


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest, settings: Settings) -> Iterator[Settings]:
    """conftest's settings on SQLite, or on a fresh migrated PostgreSQL database."""
    if request.param == "sqlite":
        yield settings
        return
    with migrated_postgres_database() as url:
        yield replace(settings, database_url=url)


def csv_bytes(*lines: str, bom: bool = False) -> io.BytesIO:
    """A CSV file's bytes from its lines."""
    data = "\r\n".join(lines).encode()
    return io.BytesIO((b"\xef\xbb\xbf" if bom else b"") + data)


def thousand(prefix: str = "reader") -> io.BytesIO:
    """A 1,000-row file of distinct new readers with names and a frequency."""
    lines = ["email,name,frequency"] + [
        f"{prefix}{i}@example.com,Reader {i},weekly" for i in range(1000)
    ]
    return csv_bytes(*lines)


def test_the_report_judges_every_row(db: Session, settings: Settings, lists: Lists) -> None:
    add_subscriber(db, "active@example.com", SubscriberStatus.ACTIVE, [lists.daily])
    add_subscriber(db, "left@example.com", SubscriberStatus.ACTIVE, [lists.offers, lists.daily])
    left = db.scalar(select(Subscriber).where(Subscriber.email_key == "left@example.com"))
    assert left is not None
    for sub in left.subscriptions:
        if sub.newsletter_id == lists.daily.id:
            sub.status = SubscriptionStatus.UNSUBSCRIBED
    add_subscriber(db, "bounced@example.com", SubscriberStatus.BOUNCED, [])
    add_subscriber(db, "elsewhere@example.com", SubscriberStatus.ACTIVE, [lists.offers])
    suppress(db, "blocked@example.com", "complaint")
    db.commit()
    before = row_counts(db)

    report = preview(
        db,
        settings,
        csv_bytes(
            "Email,Name,Shoe size,frequency,timezone",
            "new@example.com,New Reader,42,weekly,Europe/Berlin",
            "not an address,,,,",
            "NEW@example.com,Again,,,",
            ",No Address,,,",
            "active@example.com,,,,",
            "left@example.com,,,,",
            "bounced@example.com,,,,",
            "blocked@example.com,,,,",
            "elsewhere@example.com,,,,",
            "odd@example.com,,,hourly,",
            "zone@example.com,,,,Mars/Olympus",
            "",
            "last@example.com",
            bom=True,
        ),
        "daily",
    )

    assert row_counts(db) == before  # a preview writes nothing
    verdicts = [(r.row, r.status) for r in report.rows]
    assert verdicts == [
        (2, RowStatus.OK),
        (3, RowStatus.INVALID),
        (4, RowStatus.DUPLICATE),
        (5, RowStatus.MISSING),
        (6, RowStatus.SUBSCRIBED),
        (7, RowStatus.UNSUBSCRIBED),
        (8, RowStatus.SUPPRESSED),
        (9, RowStatus.SUPPRESSED),
        (10, RowStatus.OK),
        (11, RowStatus.INVALID),
        (12, RowStatus.INVALID),
        (14, RowStatus.OK),  # the blank line is skipped, the numbering is the file's
    ]
    by_row = {r.row: r for r in report.rows}
    assert "@-sign" in by_row[3].reason  # email-validator's own reason
    assert by_row[4].reason == "same address as row 2"
    assert "complaint" in by_row[9].reason
    assert by_row[2].name == "New Reader" and by_row[2].frequency == Frequency.WEEKLY
    assert by_row[2].timezone == "Europe/Berlin"
    assert report.unknown_columns == ("shoe size",)
    assert report.totals["ok"] == 3 and report.totals["invalid"] == 3
    assert sum(report.totals.values()) == len(report.rows) == 12


def test_confirm_by_mail_imports_1000_pending_readers_and_mails_each_once(
    app: Flask, db: Session, settings: Settings, lists: Lists
) -> None:
    celery = app.extensions["celery"]
    celery.conf.task_always_eager = True
    celery.conf.task_eager_propagates = True
    add_subscriber(db, "reader7@example.com", SubscriberStatus.ACTIVE, [lists.daily])
    report = preview(db, settings, thousand(), "daily")
    assert report.totals["ok"] == 999 and report.totals["subscribed"] == 1

    result = apply(db, settings, report.valid, "daily", ImportMode.CONFIRM_BY_MAIL, actor="ed")
    db.commit()
    with app.app_context():
        assert enqueue_confirmations(app.extensions["newsletter.mail_queue"], result) == 999

    assert result.created == 999 and len(result.consent_ids) == 999
    sent = mails(settings)
    assert len(sent) == 999
    assert not [m for m in sent if "reader7@example.com" in str(m["To"])]  # confirmed: no mail
    # Nobody is subscribed before clicking; the name waits with the consent record.
    statuses = set(
        db.scalars(select(Subscription.status).where(Subscription.newsletter_id == lists.daily.id))
    )
    assert statuses == {SubscriptionStatus.PENDING, SubscriptionStatus.ACTIVE}
    pending = db.scalar(select(Subscriber).where(Subscriber.email_key == "reader3@example.com"))
    assert pending is not None and pending.status == SubscriberStatus.PENDING and pending.name == ""
    assert "/confirm/" in link_in(next(m for m in sent if "reader3@" in str(m["To"])), "/confirm/")

    record = db.scalar(select(ConsentRecord).where(ConsentRecord.subscriber_id == pending.id))
    assert record is not None and record.confirmed_at is None and "import by ed" in record.source
    confirm_signup(db, settings, record.id)
    db.expire_all()
    assert pending.status == SubscriberStatus.ACTIVE and pending.name == "Reader 3"
    sub = db.scalars(select(Subscription).where(Subscription.subscriber_id == pending.id)).one()
    assert sub.status == SubscriptionStatus.ACTIVE and sub.frequency == Frequency.WEEKLY


def test_consented_imports_1000_active_readers_with_the_source_and_no_mail(
    db: Session, settings: Settings, lists: Lists
) -> None:
    report = preview(db, settings, thousand(), "daily")
    result = apply(
        db,
        settings,
        report.valid,
        "daily",
        ImportMode.CONSENTED,
        actor="editor ed",
        source="paper form at the 2024 book fair",
    )
    db.commit()
    assert result.subscribed == 1000 and result.consent_ids == ()
    assert mails(settings) == []
    active = db.scalar(
        select(func.count())
        .select_from(Subscription)
        .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
        .where(
            Subscription.status == SubscriptionStatus.ACTIVE,
            Subscriber.status == SubscriberStatus.ACTIVE,
        )
    )
    assert active == 1000
    records = db.scalars(select(ConsentRecord)).all()
    assert len(records) == 1000
    assert all(r.confirmed_at is not None and r.newsletter_slugs == ["daily"] for r in records)
    assert all("paper form at the 2024 book fair" in r.source for r in records)
    assert all("editor ed" in r.source and "UTC" in r.source for r in records)
    reader = db.scalar(select(Subscriber).where(Subscriber.email_key == "reader5@example.com"))
    assert reader is not None and reader.name == "Reader 5"


def test_consented_needs_a_source(db: Session, settings: Settings, lists: Lists) -> None:
    report = preview(db, settings, csv_bytes("email", "a@example.com"), "daily")
    with pytest.raises(ImportFileError, match="source"):
        apply(db, settings, report.valid, "daily", ImportMode.CONSENTED, actor="ed", source=" ")


def test_apply_rechecks_the_database_and_skips_what_changed(
    db: Session, settings: Settings, lists: Lists
) -> None:
    report = preview(db, settings, csv_bytes("email", "a@example.com", "b@example.com"), "daily")
    suppress(db, "b@example.com", "bounce")
    db.commit()
    # Rows handed in twice (not from one preview) are one reader, the second a duplicate.
    rows = [*report.valid, replace(report.valid[0], row=9)]
    result = apply(db, settings, rows, "daily", ImportMode.CONSENTED, actor="ed", source="x")
    assert result.subscribed == 1
    assert [(r.email, r.status) for r in result.skipped] == [
        ("b@example.com", RowStatus.SUPPRESSED),
        ("a@example.com", RowStatus.DUPLICATE),
    ]


# PostgreSQL only: SQLite does not enforce column lengths, which is the failure used here.
@pytest.mark.parametrize("settings", ["postgresql"], indirect=True)
def test_an_import_that_fails_half_way_stores_nothing(
    db: Session, settings: Settings, lists: Lists
) -> None:
    report = preview(db, settings, thousand(), "daily")
    before = row_counts(db)
    # A row the database itself refuses (past the address column's 320 characters), at the end.
    hostile = ImportRow(1002, "x" * 330 + "@example.com")
    with pytest.raises(DBAPIError):
        apply(
            db,
            settings,
            [*report.valid, hostile],
            "daily",
            ImportMode.CONSENTED,
            actor="ed",
            source="x",
        )
    db.rollback()
    assert row_counts(db) == before


def test_an_unknown_list_is_refused(db: Session, settings: Settings, lists: Lists) -> None:
    with pytest.raises(UnknownNewsletter):
        preview(db, settings, csv_bytes("email", "a@example.com"), "nope")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"name,topics\r\nAnn,\r\n", "no 'email' column"),
        (b"email\r\na@example.com\x00\r\n", "NUL bytes"),
        (b"\x89PNG\r\n\x1a\n\xff\xfe\xfd", "not UTF-8"),
        (b"email\r\n\xe9t\xe9@example.com\r\n", "not UTF-8"),
        (("," * 5000 + "email\r\n").encode(), "columns"),
        (b'email,name\r\na@example.com,"' + b"x" * 200_000 + b'"\r\n', "row 2 is not valid CSV"),
    ],
)
def test_hostile_files_are_refused_with_a_clear_reason(
    db: Session, settings: Settings, lists: Lists, data: bytes, message: str
) -> None:
    before = row_counts(db)
    with pytest.raises(ImportFileError, match=message):
        preview(db, settings, io.BytesIO(data), "daily")
    assert row_counts(db) == before


def test_a_huge_cell_within_the_csv_limit_makes_only_its_row_invalid(
    db: Session, settings: Settings, lists: Lists
) -> None:
    data = csv_bytes(
        "email,name",
        "a@example.com," + "y" * 50_000,
        "b@example.com,B",
        "c@example.com,C," + "z," * 100_000,  # 100,003 cells (the last one empty)
    )
    report = preview(db, settings, data, "daily")
    assert [r.status for r in report.rows] == [RowStatus.INVALID, RowStatus.OK, RowStatus.INVALID]
    assert "longer than" in report.rows[0].reason
    assert report.rows[2].reason == "100003 cells, but the header has 2"


def test_too_large_and_too_long_files_are_refused(
    db: Session, settings: Settings, lists: Lists
) -> None:
    big = io.BytesIO(b"email\r\n" + b"a@example.com\r\n" * (21 * 1024 * 1024 // 15))
    with pytest.raises(ImportFileError, match="larger than 20 MB"):
        preview(db, settings, big, "daily")
    assert big.tell() == settings.import_max_bytes + 1  # read no further than the limit
    few = replace(settings, import_max_rows=10)
    rows = ["email"] + [f"r{i}@example.com" for i in range(11)]
    with pytest.raises(ImportFileError, match="more than 10 rows"):
        preview(db, few, csv_bytes(*rows), "daily")


def test_semicolon_files_from_spreadsheets_are_read(
    db: Session, settings: Settings, lists: Lists
) -> None:
    report = preview(db, settings, csv_bytes("email;name", "a@example.com;Ann"), "daily")
    assert [(r.email, r.name, r.status) for r in report.rows] == [
        ("a@example.com", "Ann", RowStatus.OK)
    ]


@hypothesis_settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=st.binary(max_size=300) | st.text(max_size=300).map(lambda t: t.encode("utf-8")))
def test_any_bytes_give_a_verdict_per_row_or_a_clear_refusal(
    db: Session, lists: Lists, settings: Settings, body: bytes
) -> None:
    data = b"email,name\r\n" + body
    try:
        report = preview(db, settings, io.BytesIO(data), "daily")
    except ImportFileError as exc:
        assert str(exc)  # a reason, never another exception
        return
    records = csv.reader(io.StringIO(data.decode("utf-8-sig"), newline=""))
    expected = sum(1 for row in records if any(c.strip() for c in row))
    assert len(report.rows) == expected - 1  # the header is not a row
    assert sum(report.totals.values()) == len(report.rows)
