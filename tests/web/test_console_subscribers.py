"""The console's subscribers pages over real rows (SQLite): search, filters, counts and keyset
pages; a reader's page; unsubscribe, suppress and erase; the CSV export; the CSV import through
its preview in both modes; and a viewer refused at every change and at the export."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import replace
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.datastructures import FileStorage
from werkzeug.test import TestResponse, encode_multipart

from newsletter import create_app
from newsletter.access.console_sessions import live_sessions
from newsletter.access.roles import Role
from newsletter.readers.addresses import email_hash
from newsletter.readers.erasure import erased_consents
from newsletter.readers.signup import subscribe
from newsletter.readers.suppression import suppress
from newsletter.settings import Settings
from newsletter.store.models import (
    ConsentRecord,
    Delivery,
    DeliveryStatus,
    FeedbackEvent,
    FeedbackKind,
    Issue,
    NewsletterKind,
    Subscriber,
    SubscriberStatus,
    SubscriptionStatus,
    Suppression,
    User,
)
from newsletter.web.console import uploads
from tests.support.console import form_token, make_user, signed_in
from tests.support.readers import (
    Lists,
    add_subscriber,
    confirm_signup,
    mails,
    make_lists,
    row_counts,
    signup_for,
    subs_of,
)

READER_LINK = re.compile(r'href="/console/subscribers/(\d+)"')


@pytest.fixture
def lists(db: Session) -> Lists:
    return make_lists(db)


@pytest.fixture
def editor_user(db: Session) -> User:
    return make_user(db, "editor@example.com", Role.EDITOR)


@pytest.fixture
def editor(app: Flask, db: Session, settings: Settings, editor_user: User) -> FlaskClient:
    return signed_in(app, db, settings, editor_user)


@pytest.fixture
def viewer(app: Flask, db: Session, settings: Settings) -> FlaskClient:
    return signed_in(app, db, settings, make_user(db, "viewer@example.com", Role.VIEWER))


def ids_on(response: TestResponse) -> list[int]:
    """The readers a list page links to, in page order."""
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return [int(n) for n in READER_LINK.findall(response.get_data(as_text=True))]


def next_link(response: TestResponse) -> str | None:
    match = re.search(r'rel="next" href="([^"]+)"', response.get_data(as_text=True))
    return match.group(1).replace("&amp;", "&") if match else None


def post(client: FlaskClient, path: str, **data: object) -> TestResponse:
    return client.post(path, data={"csrf_token": form_token(client, "/console/"), **data})


# --- finding readers ------------------------------------------------------------------------------


def test_keyset_pages_walk_every_reader_once_in_id_order(
    editor: FlaskClient, db: Session, lists: Lists
) -> None:
    made = [
        add_subscriber(db, f"r{n:03d}@example.com", SubscriberStatus.ACTIVE, [lists.daily]).id
        for n in range(120)
    ]
    first = editor.get("/console/subscribers")
    assert ids_on(first) == made[:50]
    assert "120 matching" in first.get_data(as_text=True)
    second_url = next_link(first)
    assert second_url == f"/console/subscribers?after={made[49]}"
    second = editor.get(second_url)
    assert ids_on(second) == made[50:100]
    assert "First page" in second.get_data(as_text=True)
    third_url = next_link(second)
    assert third_url is not None
    third = editor.get(third_url)
    assert ids_on(third) == made[100:]
    assert next_link(third) is None


def test_search_filters_and_counts_per_status(
    editor: FlaskClient, db: Session, lists: Lists
) -> None:
    ann = add_subscriber(
        db, "ann@example.com", SubscriberStatus.ACTIVE, [lists.daily, lists.weekly], name="Ann Lee"
    )
    anna = add_subscriber(db, "x@example.org", SubscriberStatus.PENDING, [lists.daily], name="Anna")
    left = add_subscriber(db, "bob@example.com", SubscriberStatus.UNSUBSCRIBED, [lists.weekly])
    add_subscriber(db, "carl@example.com", SubscriberStatus.ACTIVE, [lists.offers])

    # The start of the address or of the name, in any case.
    assert ids_on(editor.get("/console/subscribers?q=ANN")) == [ann.id, anna.id]
    assert ids_on(editor.get("/console/subscribers?q=ann%40")) == [ann.id]
    assert ids_on(editor.get("/console/subscribers?q=lee")) == []  # a prefix, not a substring
    # The reader's status without a list; the status on the list with one.
    assert ids_on(editor.get("/console/subscribers?status=pending")) == [anna.id]
    weekend = editor.get("/console/subscribers?newsletter=weekend&status=unsubscribed")
    assert ids_on(weekend) == [left.id]
    html = editor.get("/console/subscribers?newsletter=weekend").get_data(as_text=True)
    assert "2 matching" in html
    counts = dict(re.findall(r'status--(\w+)">\w+</span> ([\d,]+)</a>', html))
    assert counts == {"pending": "0", "active": "1", "unsubscribed": "1"}
    everyone = editor.get("/console/subscribers").get_data(as_text=True)
    counts = dict(re.findall(r'status--(\w+)">\w+</span> ([\d,]+)</a>', everyone))
    assert counts == {"pending": "1", "active": "2", "unsubscribed": "1", "bounced": "0"}


@pytest.mark.parametrize(
    "query",
    [
        "newsletter=nope",
        "status=asleep",
        "newsletter=daily&status=bounced",
        "after=abc",
        "after=-1",
        "q=" + "a" * 201,
    ],
)
def test_bad_filters_are_a_400_page(editor: FlaskClient, lists: Lists, query: str) -> None:
    for path in ("/console/subscribers", "/console/subscribers/export.csv"):
        response = editor.get(f"{path}?{query}")
        assert response.status_code == 400, (path, query)
        assert "Please correct the search" in response.get_data(as_text=True)


# --- one reader -----------------------------------------------------------------------------------


def reader_with_history(db: Session, settings: Settings, lists: Lists) -> Subscriber:
    """A confirmed reader of two lists with a delivery and a bounce on file."""
    result = subscribe(
        db, settings, signup_for("dora@example.com", lists.daily.id, lists.offers.id, name="Dora")
    )
    db.commit()
    assert result.consent_id is not None
    confirm_signup(db, settings, result.consent_id)
    issue = Issue(newsletter_id=lists.daily.id, kind=NewsletterKind.DIGEST, subject="Monday news")
    db.add(issue)
    db.flush()
    db.add(
        Delivery(
            issue_id=issue.id,
            subscriber_id=result.subscriber_id,
            status=DeliveryStatus.SENT,
            smtp_code=250,
            smtp_response="250 2.0.0 queued as 4XYZ",
        )
    )
    db.add(
        FeedbackEvent(
            subscriber_id=result.subscriber_id,
            issue_id=issue.id,
            kind=FeedbackKind.SOFT_BOUNCE,
            detail="mailbox full, try later",
        )
    )
    db.commit()
    subscriber = db.get(Subscriber, result.subscriber_id)
    assert subscriber is not None
    return subscriber


def test_the_readers_page_shows_lists_consent_deliveries_and_bounces(
    editor: FlaskClient, viewer: FlaskClient, db: Session, settings: Settings, lists: Lists
) -> None:
    reader = reader_with_history(db, settings, lists)
    html = editor.get(f"/console/subscribers/{reader.id}").get_data(as_text=True)
    for text in (
        "dora@example.com",
        "Dora",
        "Morning Briefing",
        "Offers &amp; Announcements",
        "I agree.",  # the consent wording
        "203.0.113.9",  # where the signup came from
        "v-test",
        "Monday news",
        "250 2.0.0 queued as 4XYZ",
        "soft-bounce",
        "mailbox full, try later",
        "Erase this reader",
    ):
        assert text in html, text
    # A viewer reads the same page without the buttons that change anything.
    seen = viewer.get(f"/console/subscribers/{reader.id}")
    assert seen.status_code == 200 and "I agree." in seen.get_data(as_text=True)
    assert "Erase this reader" not in seen.get_data(as_text=True)
    assert 'method="post" action="/console/subscribers' not in seen.get_data(as_text=True)
    assert editor.get("/console/subscribers/999999").status_code == 404


def test_unsubscribe_from_one_list_then_from_all(
    editor: FlaskClient, db: Session, lists: Lists
) -> None:
    reader = add_subscriber(
        db, "eve@example.com", SubscriberStatus.ACTIVE, [lists.daily, lists.weekly]
    )
    path = f"/console/subscribers/{reader.id}/unsubscribe"
    done = post(editor, path, newsletter="daily")
    assert (
        done.status_code == 302 and done.headers["Location"] == f"/console/subscribers/{reader.id}"
    )
    assert "eve@example.com left daily." in editor.get(done.headers["Location"]).get_data(
        as_text=True
    )
    subs = subs_of(db, reader.id)
    assert subs[lists.daily.id].status == SubscriptionStatus.UNSUBSCRIBED
    assert subs[lists.weekly.id].status == SubscriptionStatus.ACTIVE

    assert post(editor, path, newsletter="").status_code == 302
    assert {s.status for s in subs_of(db, reader.id).values()} == {SubscriptionStatus.UNSUBSCRIBED}
    db.refresh(reader)
    assert reader.status == SubscriberStatus.UNSUBSCRIBED
    assert post(editor, path, newsletter="nope").status_code == 400


def test_suppress_puts_the_address_on_the_do_not_mail_list(
    editor: FlaskClient, db: Session, lists: Lists
) -> None:
    reader = add_subscriber(db, "fay@example.com", SubscriberStatus.ACTIVE, [lists.daily])
    done = post(editor, f"/console/subscribers/{reader.id}/suppress", detail="asked by phone")
    assert done.status_code == 302
    row = db.scalars(
        select(Suppression).where(Suppression.email_hash == email_hash("fay@example.com"))
    ).one()
    assert row.reason == "editor" and row.detail == "asked by phone"
    assert {s.status for s in subs_of(db, reader.id).values()} == {SubscriptionStatus.UNSUBSCRIBED}
    page = editor.get(f"/console/subscribers/{reader.id}").get_data(as_text=True)
    assert "asked by phone" in page


def test_erase_asks_for_the_address_then_removes_the_reader_and_keeps_the_hash(
    editor: FlaskClient, db: Session, settings: Settings, lists: Lists
) -> None:
    reader = reader_with_history(db, settings, lists)
    sid = reader.id
    ask = editor.get(f"/console/subscribers/{sid}/erase")
    assert ask.status_code == 200
    text = ask.get_data(as_text=True)
    assert "What stays, and why" in text and "Art. 7(1)" in text
    assert f"deleted after {settings.erased_consent_days} days" in text

    before = row_counts(db)
    for typed in ("", "someone@example.com"):
        refused = post(editor, f"/console/subscribers/{sid}/erase", address=typed)
        assert refused.status_code == 400
        assert "nothing was erased" in refused.get_data(as_text=True) or typed == ""
    assert row_counts(db) == before

    done = post(editor, f"/console/subscribers/{sid}/erase", address="  DORA@example.com ")
    assert done.status_code == 302 and done.headers["Location"] == "/console/subscribers"
    flashed = editor.get("/console/subscribers").get_data(as_text=True)
    assert "dora@example.com is erased" in flashed and "1 consent proof(s) kept" in flashed
    db.expire_all()
    assert db.get(Subscriber, sid) is None
    for model in (Delivery, FeedbackEvent, ConsentRecord):
        assert db.scalars(select(model).where(model.subscriber_id == sid)).all() == []
    suppression = db.scalars(select(Suppression)).one()
    assert suppression.email_hash == email_hash("dora@example.com")
    assert suppression.reason == "erased"
    (proof,) = erased_consents(db, "dora@example.com")
    assert proof.consent_text == "I agree." and proof.newsletter_slugs == ["daily", "offers"]
    assert editor.get(f"/console/subscribers/{sid}").status_code == 404


# --- export ---------------------------------------------------------------------------------------


def test_export_streams_the_filtered_set_as_formula_safe_csv(
    editor: FlaskClient, db: Session, lists: Lists
) -> None:
    add_subscriber(
        db, "gil@example.com", SubscriberStatus.ACTIVE, [lists.daily], name="=HYPERLINK(1)"
    )
    add_subscriber(db, "hal@example.com", SubscriberStatus.ACTIVE, [lists.weekly], name="+Hal")
    add_subscriber(db, "ida@example.com", SubscriberStatus.PENDING, [lists.daily], name="Ida")

    response = editor.get("/console/subscribers/export.csv?newsletter=daily")
    assert response.status_code == 200 and response.is_streamed
    assert response.mimetype == "text/csv"
    disposition = response.headers["Content-Disposition"]
    assert re.fullmatch(r'attachment; filename="subscribers-daily-\d{8}\.csv"', disposition)
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0] == ["email", "name", "status", "newsletters", "subscribed_at", "confirmed_at"]
    assert [(r[0], r[1], r[2]) for r in rows[1:]] == [
        ("gil@example.com", "'=HYPERLINK(1)", "active"),
        ("ida@example.com", "Ida", "pending"),
    ]
    searched = editor.get("/console/subscribers/export.csv?q=ha").get_data(as_text=True)
    assert [r[:2] for r in csv.reader(io.StringIO(searched))][1:] == [["hal@example.com", "'+Hal"]]


# --- import ---------------------------------------------------------------------------------------


def upload(client: FlaskClient, data: bytes, **fields: str) -> TestResponse:
    """Post the upload form as a browser does (multipart, the file and the choices)."""
    form = {
        "csrf_token": form_token(client, "/console/subscribers/import"),
        "newsletter": "daily",
        "mode": "confirm-by-mail",
        "source": "",
        **fields,
        "file": FileStorage(io.BytesIO(data), "readers.csv", content_type="text/csv"),
    }
    # Encoded in memory: the test client would spool a large body to a file it never closes.
    boundary, body = encode_multipart(form)
    return client.post(
        "/console/subscribers/import",
        data=body,
        content_type=f"multipart/form-data; boundary={boundary}",
    )


def apply_token(response: TestResponse) -> str:
    match = re.search(
        r'name="upload" type="hidden" value="([^"]+)"', response.get_data(as_text=True)
    )
    assert match, response.get_data(as_text=True)
    return match.group(1)


REPORT_FILE = "\r\n".join(
    [
        "email,name,shoe size",
        "new1@example.com,New One,42",
        "not an address,,",
        "new1@example.com,Again,",
        "blocked@example.com,,",
        "member@example.com,,",
        ",Nobody,",
        "New2@Example.com,New Two,",
    ]
).encode()


def test_the_preview_reports_every_row_and_stores_nothing(
    editor: FlaskClient, db: Session, settings: Settings, lists: Lists
) -> None:
    suppress(db, "blocked@example.com", "complaint")
    add_subscriber(db, "member@example.com", SubscriberStatus.ACTIVE, [lists.daily])
    db.commit()
    before = row_counts(db)
    response = upload(editor, REPORT_FILE)
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    totals = dict(re.findall(r'status--(\w+)">\w+</span></th><td>([\d,]+)</td>', html))
    assert totals == {
        "ok": "2",
        "invalid": "1",
        "missing": "1",
        "duplicate": "1",
        "subscribed": "1",
        "unsubscribed": "0",
        "suppressed": "1",
    }
    problems = re.findall(
        r"<tr><th scope=\"row\">(\d+)</th><td>([^<]*)</td><td>(\w+)</td><td>([^<]*)</td>", html
    )
    assert [(n, verdict) for n, _, verdict, _ in problems] == [
        ("3", "invalid"),
        ("4", "duplicate"),
        ("5", "suppressed"),
        ("6", "subscribed"),
        ("7", "missing"),
    ]
    assert "same address as row 2" in html and "do-not-mail list (complaint)" in html
    assert "Columns we ignore: shoe size" in html
    assert "Import 2 readers" in html
    assert row_counts(db) == before
    # The file waits on the server under a random id, for this session only.
    token = apply_token(response)
    assert (settings.data_dir / "imports" / f"{token}.csv").read_bytes() == REPORT_FILE


def test_apply_with_recorded_consent_subscribes_at_once_without_mail(
    editor: FlaskClient, db: Session, settings: Settings, lists: Lists
) -> None:
    lines = ["email,name"] + [f"reader{i}@example.com,Reader {i}" for i in range(300)]
    data = "\n".join(lines).encode()
    missing_source = upload(editor, data, mode="consented", source="  ")
    assert missing_source.status_code == 400
    assert "Say where and how the readers consented." in missing_source.get_data(as_text=True)

    preview = upload(editor, data, mode="consented", source="paper form at the 2024 fair")
    assert "Import 300 readers" in preview.get_data(as_text=True)
    token = apply_token(preview)
    done = post(editor, "/console/subscribers/import/apply", upload=token)
    assert done.status_code == 302
    assert done.headers["Location"] == "/console/subscribers?newsletter=daily"
    assert "Imported 300 readers (300 new) into daily." in editor.get(
        done.headers["Location"]
    ).get_data(as_text=True)
    assert mails(settings) == []
    reader = db.scalar(select(Subscriber).where(Subscriber.email_key == "reader7@example.com"))
    assert (
        reader is not None
        and reader.status == SubscriberStatus.ACTIVE
        and reader.name == "Reader 7"
    )
    assert {s.status for s in subs_of(db, reader.id).values()} == {SubscriptionStatus.ACTIVE}
    record = db.scalars(select(ConsentRecord).where(ConsentRecord.subscriber_id == reader.id)).one()
    assert record.confirmed_at is not None
    assert "paper form at the 2024 fair" in record.source and "editor@example.com" in record.source
    # The file is gone: the same button again imports nothing twice.
    assert not (settings.data_dir / "imports" / f"{token}.csv").exists()
    before = row_counts(db)
    again = post(editor, "/console/subscribers/import/apply", upload=token)
    assert again.status_code == 404 and "upload the file again" in again.get_data(as_text=True)
    assert row_counts(db) == before


def test_apply_with_confirmation_mails_queues_one_each(
    app: Flask, editor: FlaskClient, db: Session, settings: Settings, lists: Lists
) -> None:
    celery = app.extensions["celery"]
    celery.conf.task_always_eager = True
    celery.conf.task_eager_propagates = True
    data = b"email,name\nkim@example.com,Kim\nlee@example.com,Lee\nbad address,\n"
    preview = upload(editor, data, mode="confirm-by-mail")
    assert "Import 2 readers" in preview.get_data(as_text=True)
    done = post(editor, "/console/subscribers/import/apply", upload=apply_token(preview))
    assert done.status_code == 302
    flashed = editor.get(done.headers["Location"]).get_data(as_text=True)
    assert "2 confirmation mails are queued" in flashed
    sent = mails(settings)
    assert sorted(str(m["To"]) for m in sent) == ["kim@example.com", "lee@example.com"]
    kim = db.scalar(select(Subscriber).where(Subscriber.email_key == "kim@example.com"))
    assert kim is not None and kim.status == SubscriberStatus.PENDING and kim.name == ""
    assert {s.status for s in subs_of(db, kim.id).values()} == {SubscriptionStatus.PENDING}


def upload_row_id(db: Session, settings: Settings, user: User) -> int:
    """The id of the user's one console session (the one that uploaded)."""
    (row,) = live_sessions(db, settings, user.id)
    return row.id


def test_an_upload_belongs_to_its_session_and_expires(
    app: Flask,
    editor: FlaskClient,
    editor_user: User,
    db: Session,
    settings: Settings,
    lists: Lists,
) -> None:
    preview = upload(editor, b"email\nmia@example.com\n")
    token = apply_token(preview)
    other = signed_in(app, db, settings, make_user(db, "other@example.com", Role.ADMIN))
    stolen = post(other, "/console/subscribers/import/apply", upload=token)
    assert stolen.status_code == 404
    assert (
        post(editor, "/console/subscribers/import/apply", upload="../../etc/passwd").status_code
        == 404
    )
    assert db.scalar(select(Subscriber).where(Subscriber.email_key == "mia@example.com")) is None

    # Only one apply can take the file (a double-click imports once).
    waiting = uploads.load(settings, token, upload_row_id(db, settings, editor_user))
    assert waiting is not None
    claimed = uploads.claim(settings, waiting)
    assert claimed is not None and uploads.claim(settings, waiting) is None
    claimed.rename(waiting.path(settings))  # put it back for the expiry below

    path = settings.data_dir / "imports" / f"{token}.csv"
    assert path.exists()
    assert uploads.sweep(settings, now=path.stat().st_mtime + uploads.KEEP + 1) == 2
    assert post(editor, "/console/subscribers/import/apply", upload=token).status_code == 404


def test_a_file_larger_than_any_other_form_is_read(
    editor: FlaskClient, db: Session, lists: Lists
) -> None:
    # Over a megabyte: far past the small limit of every other form, within the importer's.
    notes = "n" * 990
    lines = ["email,notes"] + [f"big{i}@example.com,{notes}" for i in range(1200)]
    data = "\n".join(lines).encode()
    assert len(data) > 1024 * 1024
    response = upload(editor, data)
    assert response.status_code == 200
    assert "Import 1,200 readers" in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"name\nno email column\n", "no &#39;email&#39; column"),
        (b"\xff\xfe\x00binary", "NUL bytes"),
        (b"", "The file is empty"),
    ],
)
def test_a_file_that_cannot_be_imported_is_a_400_with_the_reason(
    editor: FlaskClient, settings: Settings, lists: Lists, data: bytes, reason: str
) -> None:
    response = upload(editor, data)
    assert response.status_code == 400
    assert reason in response.get_data(as_text=True)
    assert list((settings.data_dir / "imports").glob("*")) == []


def test_an_oversized_upload_is_a_413_page(
    settings: Settings, db: Session, tmp_path: Path, lists: Lists
) -> None:
    small = replace(settings, import_max_bytes=10_000)
    app = create_app(small)
    client = signed_in(app, db, small, make_user(db, "ed@example.com", Role.EDITOR))
    just_over = b"email\n" + b"a@example.com\n" * 800  # over the limit, within the form's slack
    far_over = b"email\n" + b"a@example.com\n" * 20_000  # over the request's own limit too
    for data in (just_over, far_over):
        response = upload(client, data)
        assert response.status_code == 413
        html = response.get_data(as_text=True)
        assert "The file is larger than 9.77 KB" in html
        assert "NEWSLETTER_IMPORT_MAX_BYTES" in html and "split it into smaller files" in html
    assert list((small.data_dir / "imports").glob("*")) == []


# --- who may --------------------------------------------------------------------------------------


def test_a_viewer_reads_but_gets_403_on_every_change_and_the_export(
    viewer: FlaskClient, editor: FlaskClient, db: Session, lists: Lists
) -> None:
    reader = add_subscriber(db, "ned@example.com", SubscriberStatus.ACTIVE, [lists.daily])
    assert ids_on(viewer.get("/console/subscribers?q=ned")) == [reader.id]
    html = viewer.get("/console/subscribers").get_data(as_text=True)
    assert "Export these as CSV" not in html and "Import a CSV file" not in html
    preview = upload(editor, b"email\nnew@example.com\n")
    token = apply_token(preview)
    before = row_counts(db)
    sid = reader.id
    for path in (
        "/console/subscribers/export.csv",
        "/console/subscribers/import",
        f"/console/subscribers/{sid}/erase",
    ):
        assert viewer.get(path).status_code == 403, path
    csrf = form_token(viewer, "/console/")
    for path, data in (
        (f"/console/subscribers/{sid}/unsubscribe", {"newsletter": ""}),
        (f"/console/subscribers/{sid}/suppress", {"detail": ""}),
        (f"/console/subscribers/{sid}/erase", {"address": "ned@example.com"}),
        ("/console/subscribers/import/apply", {"upload": token}),
    ):
        assert viewer.post(path, data={"csrf_token": csrf, **data}).status_code == 403, path
    refused = viewer.post(
        "/console/subscribers/import",
        data={
            "csrf_token": csrf,
            "newsletter": "daily",
            "file": (io.BytesIO(b"email\nz@example.com\n"), "a.csv"),
        },
        content_type="multipart/form-data",
    )
    assert refused.status_code == 403
    assert row_counts(db) == before
