"""The editors' reader list and export: filters, search, counts, keyset pages that cover every
match exactly once, a reader's record, and an export that is safe to open in a spreadsheet.

On SQLite and PostgreSQL; on PostgreSQL the plans are checked to use the indexes, not a scan
and sort of every reader.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import replace

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from newsletter.readers.directory import (
    ReaderFilter,
    count_readers,
    list_readers,
    page_query,
    reader_record,
)
from newsletter.readers.exporting import HEADER, iter_csv, safe_cell, write_csv
from newsletter.readers.subscriptions import UnknownNewsletter
from newsletter.readers.suppression import suppress
from newsletter.settings import Settings
from newsletter.store.models import (
    Delivery,
    FeedbackEvent,
    FeedbackKind,
    Issue,
    NewsletterKind,
    SubscriberStatus,
    SubscriptionStatus,
)
from tests.support.readers import Lists, add_subscriber
from tests.support.services import migrated_postgres_database


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest, settings: Settings) -> Iterator[Settings]:
    """conftest's settings on SQLite, or on a fresh migrated PostgreSQL database."""
    if request.param == "sqlite":
        yield settings
        return
    with migrated_postgres_database() as url:
        yield replace(settings, database_url=url)


@pytest.fixture
def readers(db: Session, lists: Lists) -> dict[str, int]:
    """A mix: 30 active daily readers, pending, unsubscribed, offers-only, and named ones."""
    ids: dict[str, int] = {}
    for i in range(30):
        ids[f"a{i:02d}"] = add_subscriber(
            db, f"a{i:02d}@example.com", SubscriberStatus.ACTIVE, [lists.daily]
        ).id
    ids["pending"] = add_subscriber(
        db, "pending@example.com", SubscriberStatus.PENDING, [lists.daily]
    ).id
    ids["left"] = add_subscriber(
        db, "left@example.com", SubscriberStatus.UNSUBSCRIBED, [lists.daily]
    ).id
    ids["offers"] = add_subscriber(
        db, "offers@example.com", SubscriberStatus.ACTIVE, [lists.offers]
    ).id
    ids["grace"] = add_subscriber(
        db, "g.hopper@navy.example", SubscriberStatus.ACTIVE, [lists.offers], name="Grace Hopper"
    ).id
    ids["under"] = add_subscriber(
        db, "under_score@example.com", SubscriberStatus.ACTIVE, [lists.offers], name="100% Ann"
    ).id
    return ids


def every_page(session: Session, f: ReaderFilter, limit: int) -> list[list[int]]:
    """All pages of a filter, following the cursor."""
    pages: list[list[int]] = []
    after = 0
    while True:
        page = list_readers(session, f, after=after, limit=limit)
        pages.append([r.id for r in page.rows])
        if page.next_after is None:
            return pages
        after = page.next_after


def test_keyset_pages_cover_every_match_once_in_order(
    db: Session, lists: Lists, readers: dict[str, int]
) -> None:
    f = ReaderFilter(newsletter_slug="daily")
    pages = every_page(db, f, limit=7)
    flat = [i for page in pages for i in page]
    assert len(pages) == 5 and all(len(p) == 7 for p in pages[:-1]) and len(pages[-1]) == 4
    assert flat == sorted(flat) and len(set(flat)) == len(flat) == 32
    assert set(flat) == {v for k, v in readers.items() if k not in {"offers", "grace", "under"}}
    # A reader added behind the cursor does not shift later pages (no OFFSET).
    page_two = list_readers(db, f, after=pages[0][-1], limit=7)
    add_subscriber(db, "aaa@example.com", SubscriberStatus.ACTIVE, [lists.daily])
    assert list_readers(db, f, after=pages[0][-1], limit=7).rows[:7] == page_two.rows


def test_filters_and_counts(db: Session, lists: Lists, readers: dict[str, int]) -> None:
    def ids(f: ReaderFilter) -> set[int]:
        return {i for page in every_page(db, f, 100) for i in page}

    active_daily = ReaderFilter("daily", SubscriptionStatus.ACTIVE)
    assert ids(active_daily) == {readers[f"a{i:02d}"] for i in range(30)}
    assert ids(ReaderFilter(status=SubscriberStatus.PENDING)) == {readers["pending"]}
    assert ids(ReaderFilter(subscription_status=SubscriptionStatus.UNSUBSCRIBED)) == {
        readers["left"]
    }
    counts = count_readers(db, active_daily)
    assert counts.total == 30
    assert counts.by_subscription_status == {"pending": 1, "active": 30, "unsubscribed": 1}
    assert counts.by_status == {}  # with a list, the breakdown is by the status on it
    everyone = count_readers(db, ReaderFilter())
    assert everyone.total == 35 and everyone.by_subscription_status == {}
    assert everyone.by_status == {"pending": 1, "active": 33, "unsubscribed": 1, "bounced": 0}
    pending = count_readers(db, ReaderFilter(status=SubscriberStatus.PENDING))
    assert pending.total == 1 and pending.by_status == everyone.by_status
    searched = count_readers(db, ReaderFilter("daily", search="a1"))
    assert searched.total == 10 and searched.by_subscription_status["active"] == 10
    on_some_list = ReaderFilter(subscription_status=SubscriptionStatus.ACTIVE)
    assert count_readers(db, on_some_list).total == len(ids(on_some_list)) == 33
    assert ids(ReaderFilter("daily", status=SubscriberStatus.PENDING)) == {readers["pending"]}
    with pytest.raises(UnknownNewsletter):
        list_readers(db, ReaderFilter("nope"))


def test_search_is_a_case_insensitive_prefix_of_address_or_name(
    db: Session, lists: Lists, readers: dict[str, int]
) -> None:
    def found(term: str) -> set[int]:
        return {r.id for r in list_readers(db, ReaderFilter(search=term), limit=100).rows}

    assert found("A0") == {readers[f"a0{i}"] for i in range(10)}
    assert found("G.HOP") == {readers["grace"]}
    assert found("grace h") == {readers["grace"]}
    assert found("hopper") == set()  # a prefix, not a substring
    # LIKE's wildcards are plain characters in a search.
    assert found("under_") == {readers["under"]} and found("u%") == set()
    assert found("100%") == {readers["under"]} and found("_") == set()
    assert count_readers(db, ReaderFilter(search="a0")).total == 10


def test_reader_record_gathers_lists_consent_deliveries_and_reports(
    db: Session, lists: Lists, readers: dict[str, int]
) -> None:
    sid = readers["a01"]
    issue = Issue(newsletter_id=lists.daily.id, kind=NewsletterKind.DIGEST, subject="Monday")
    db.add(issue)
    db.flush()
    db.add(Delivery(issue_id=issue.id, subscriber_id=sid, smtp_response="250 ok"))
    db.add(FeedbackEvent(subscriber_id=sid, issue_id=issue.id, kind=FeedbackKind.SOFT_BOUNCE))
    suppress(db, "a01@example.com", "complaint")
    db.commit()
    record = reader_record(db, sid)
    assert record is not None
    assert record.reader["email"] == "a01@example.com"
    assert [s["newsletter"] for s in record.subscriptions] == ["daily"]
    assert record.deliveries[0]["subject"] == "Monday"
    assert record.feedback_events[0]["kind"] == "soft-bounce"
    assert record.suppression is not None and record.suppression["reason"] == "complaint"
    assert reader_record(db, 10**6) is None and reader_record(db, 0) is None


def test_export_is_filtered_complete_and_formula_safe(
    db: Session, lists: Lists, readers: dict[str, int]
) -> None:
    hostile = ['=HYPERLINK("http://evil")', "+1+1", "-2", "@SUM(A1)", "\tTab", "\rCR"]
    for i, name in enumerate(hostile):
        add_subscriber(db, f"h{i}@example.com", SubscriberStatus.ACTIVE, [lists.weekly], name=name)
    out = io.StringIO()
    assert write_csv(db, ReaderFilter("weekend"), out) == len(hostile)
    rows = list(csv.reader(io.StringIO(out.getvalue())))
    assert tuple(rows[0]) == HEADER
    assert [r[1] for r in rows[1:]] == ["'" + name for name in hostile]
    assert all(r[3] == "weekend:active" for r in rows[1:])

    daily_pending = "".join(iter_csv(db, ReaderFilter("daily", SubscriptionStatus.PENDING)))
    assert [r[0] for r in csv.reader(io.StringIO(daily_pending))] == [
        "email",
        "pending@example.com",
    ]
    everyone = list(csv.reader(io.StringIO("".join(iter_csv(db, ReaderFilter())))))
    assert len(everyone) == 1 + 35 + len(hostile)
    assert safe_cell("ann@example.com") == "ann@example.com" and safe_cell("-x") == "'-x"


@pytest.mark.parametrize("settings", ["postgresql"], indirect=True)
def test_postgresql_serves_pages_and_search_from_indexes(
    db: Session, lists: Lists, readers: dict[str, int]
) -> None:
    # Planner statistics say "tiny table" otherwise, and a scan is then the right plan.
    db.execute(text("SET enable_seqscan = off"))
    db.execute(text("ANALYZE"))

    def plan(f: ReaderFilter) -> str:
        statement = page_query(db, f, 0, 50)
        compiled = statement.compile(db.get_bind(), compile_kwargs={"literal_binds": True})
        return "\n".join(r[0] for r in db.execute(text(f"EXPLAIN {compiled}")))

    assert "ix_subscribers_email_key_prefix" in plan(ReaderFilter(search="a0"))
    assert "ix_subscribers_name_key_prefix" in plan(ReaderFilter(search="grace"))
    assert "ix_subscriptions_newsletter_status" in plan(
        ReaderFilter("daily", SubscriptionStatus.ACTIVE)
    )
    assert "ix_subscriptions_newsletter_subscriber" in plan(ReaderFilter("daily"))
    assert "Sort" not in plan(ReaderFilter(status=SubscriberStatus.ACTIVE))
