"""Readers over the JSON API, with real requests on a real database: the list's filters, keyset
pages and counts; a reader's record; adding one by confirmation mail or on recorded consent;
edits with If-Match; unsubscribe; erasure; the suppression list; scopes and bad input."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter import create_app
from newsletter.access.api_tokens import SCOPES, create_token
from newsletter.readers.addresses import email_hash
from newsletter.readers.erasure import suppress_reader
from newsletter.settings import Settings
from newsletter.store.db import dispose_engines, get_sessionmaker
from newsletter.store.models import (
    ConsentRecord,
    Subscriber,
    SubscriberStatus,
    SubscriptionStatus,
    Suppression,
)
from tests.support.readers import (
    Lists,
    add_subscriber,
    link_in,
    mails,
    mails_to,
    make_lists,
    path_of,
    row_counts,
)
from tests.support.services import migrated_postgres_database
from tests.web.test_openapi import assert_problem
from tests.web.test_public_signup import make_eager

PROBLEM = "application/problem+json"


@pytest.fixture(autouse=True)
def eager(app: Flask) -> Flask:
    """Mails are sent in process, where the test reads them (and no broker gets a task)."""
    return make_eager(app)


@pytest.fixture
def lists(db: Session) -> Lists:
    return make_lists(db)


def bearer(db: Session, *scopes: str) -> dict[str, str]:
    """Headers with a fresh token of ``scopes`` (every scope by default)."""
    _, plaintext = create_token(db, "tests", scopes or SCOPES)
    db.commit()
    return {"Authorization": f"Bearer {plaintext}"}


@pytest.fixture
def auth(db: Session) -> dict[str, str]:
    return bearer(db)


def reader(db: Session, address: str) -> Subscriber | None:
    db.expire_all()
    return db.scalar(select(Subscriber).where(Subscriber.email == address))


def ids_of(pages: list[dict[str, Any]]) -> list[list[int]]:
    return [[item["id"] for item in p["items"]] for p in pages]


def walk(client: FlaskClient, query: str, auth: dict[str, str]) -> list[dict[str, Any]]:
    """Every page of GET /subscribers?<query>&limit=2, following ``next``."""
    pages: list[dict[str, Any]] = []
    after = ""
    while True:
        response = client.get(f"/api/v1/subscribers?limit=2&{query}{after}", headers=auth)
        assert response.status_code == 200, response.get_data(as_text=True)
        pages.append(response.get_json())
        if pages[-1]["next"] is None:
            return pages
        after = f"&after={pages[-1]['next']}"


# --- The list ------------------------------------------------------------------------------------


def test_the_list_filters_and_pages_by_cursor(
    client: FlaskClient, db: Session, lists: Lists, auth: dict[str, str]
) -> None:
    active = [
        add_subscriber(db, f"ann{n}@example.com", SubscriberStatus.ACTIVE, [lists.daily]).id
        for n in range(3)
    ]
    pending = add_subscriber(db, "bob@example.com", SubscriberStatus.PENDING, [lists.daily]).id
    left = add_subscriber(
        db, "carl@example.com", SubscriberStatus.UNSUBSCRIBED, [lists.offers], name="Zed"
    ).id
    everyone = walk(client, "", auth)
    assert ids_of(everyone) == [active[:2], [active[2], pending], [left]]
    assert everyone[0]["counts"] is None
    assert everyone[0]["items"][0]["newsletters"] == ["daily:active"]
    assert ids_of(walk(client, "newsletter=daily", auth)) == [active[:2], [active[2], pending]]
    assert ids_of(walk(client, "newsletter=daily&status=pending", auth)) == [[pending]]
    assert ids_of(walk(client, "status=unsubscribed", auth)) == [[left]]
    assert ids_of(walk(client, "q=ANN", auth)) == [active[:2], [active[2]]]
    assert ids_of(walk(client, "q=zed", auth)) == [[left]]

    counted = client.get("/api/v1/subscribers?newsletter=daily&counts=true", headers=auth)
    assert counted.get_json()["counts"] == {
        "total": 4,
        "by_status": {"pending": 1, "active": 3, "unsubscribed": 0},
    }
    overall = client.get("/api/v1/subscribers?counts=true&status=active", headers=auth)
    assert overall.get_json()["counts"]["total"] == 3
    assert overall.get_json()["counts"]["by_status"]["unsubscribed"] == 1


def test_bad_list_queries_are_problems(
    client: FlaskClient, lists: Lists, auth: dict[str, str]
) -> None:
    unknown = client.get("/api/v1/subscribers?newsletter=nope", headers=auth)
    assert "nope" in assert_problem(unknown, 404)["detail"]
    bounced = client.get("/api/v1/subscribers?newsletter=daily&status=bounced", headers=auth)
    assert assert_problem(bounced, 400)["field"] == "status"
    assert assert_problem(client.get("/api/v1/subscribers?after=WzFd1", headers=auth), 400)
    too_many = client.get("/api/v1/subscribers?limit=501", headers=auth)
    assert assert_problem(too_many, 400)["errors"][0]["loc"] == ["query", "limit"]
    nul = client.get("/api/v1/subscribers?q=a%00b", headers=auth)
    assert assert_problem(nul, 400)["field"] == "q"


# --- One reader ----------------------------------------------------------------------------------


def test_a_readers_record_holds_lists_consent_with_ip_and_its_etag(
    client: FlaskClient, db: Session, lists: Lists, auth: dict[str, str]
) -> None:
    subscriber = add_subscriber(db, "ann@example.com", SubscriberStatus.ACTIVE, [lists.daily])
    db.add(
        ConsentRecord(
            subscriber_id=subscriber.id,
            newsletter_slugs=["daily"],
            consent_text_version="v1",
            consent_text="Yes please",
            signup_ip="192.0.2.7",
            signup_user_agent="Firefox",
            nonce="n-1",
        )
    )
    db.commit()
    response = client.get(f"/api/v1/subscribers/{subscriber.id}", headers=auth)
    assert response.status_code == 200
    body = response.get_json()
    assert body["reader"]["email"] == "ann@example.com"
    assert [s["newsletter"] for s in body["subscriptions"]] == ["daily"]
    assert body["consent_records"][0]["signup_ip"] == "192.0.2.7"
    assert body["suppression"] is None and body["deliveries"] == []
    assert response.headers["ETag"].startswith('"')
    assert_problem(client.get("/api/v1/subscribers/99999", headers=auth), 404)


# --- Adding readers ------------------------------------------------------------------------------


def test_adding_with_confirm_mails_the_signups_confirmation(
    client: FlaskClient, db: Session, settings: Settings, lists: Lists, auth: dict[str, str]
) -> None:
    response = client.post(
        "/api/v1/subscribers",
        json={
            "email": "New@Example.com",
            "name": "Nia",
            "newsletters": ["daily", "offers"],
            "confirm": True,
        },
        headers=auth,
    )
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["confirmation_mail"] is True
    assert response.headers["Location"] == f"/api/v1/subscribers/{body['reader']['id']}"
    assert body["reader"]["status"] == "pending" and body["reader"]["name"] == ""
    assert {s["newsletter"]: s["status"] for s in body["subscriptions"]} == {
        "daily": "pending",
        "offers": "pending",
    }
    [consent] = body["consent_records"]
    assert consent["newsletter_slugs"] == ["daily", "offers"] and consent["confirmed_at"] is None
    assert consent["source"].startswith("API request by API token #")
    [mail] = mails_to(settings, "new@example.com")
    confirmed = client.post(path_of(link_in(mail, "/confirm")))
    assert confirmed.status_code in (200, 302, 303)
    found = reader(db, "New@example.com")
    assert found is not None and found.status == SubscriberStatus.ACTIVE and found.name == "Nia"


def test_adding_with_recorded_consent_joins_at_once_without_mail(
    client: FlaskClient, db: Session, settings: Settings, lists: Lists, auth: dict[str, str]
) -> None:
    response = client.post(
        "/api/v1/subscribers",
        json={
            "email": "fair@example.com",
            "name": "Fay",
            "newsletters": ["daily"],
            "consent": {"source": "paper form at the 2024 fair"},
            "topics": ["World"],
            "frequency": "weekly",
            "timezone": "Europe/Berlin",
        },
        headers=auth,
    )
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["confirmation_mail"] is False
    assert body["reader"]["status"] == "active" and body["reader"]["name"] == "Fay"
    assert body["reader"]["topics"] == ["World"]
    assert body["reader"]["timezone"] == "Europe/Berlin"
    [sub] = body["subscriptions"]
    assert (sub["status"], sub["frequency"]) == ("active", "weekly")
    [consent] = body["consent_records"]
    assert consent["confirmed_at"] is not None
    assert consent["source"].startswith("paper form at the 2024 fair (recorded by API token #")
    assert "on API request" in consent["source"]
    assert mails(settings) == []


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        ("subscribed", "subscribed: already subscribed"),
        ("left", "unsubscribed: left this list"),
        ("suppressed", "suppressed: on the do-not-mail list (editor)"),
        ("erased", "suppressed: on the do-not-mail list (erased)"),
    ],
)
def test_an_address_the_import_would_refuse_is_a_409_naming_why(
    client: FlaskClient,
    db: Session,
    settings: Settings,
    lists: Lists,
    auth: dict[str, str],
    state: str,
    reason: str,
) -> None:
    if state == "subscribed":
        add_subscriber(db, "x@example.com", SubscriberStatus.ACTIVE, [lists.daily])
    elif state == "left":
        add_subscriber(
            db,
            "x@example.com",
            SubscriberStatus.ACTIVE,
            [lists.daily],
            sub_status=SubscriptionStatus.UNSUBSCRIBED,
        )
    elif state == "suppressed":
        suppress_reader(db, "x@example.com")
        db.commit()
    else:
        made = add_subscriber(db, "x@example.com", SubscriberStatus.ACTIVE, [lists.weekly])
        assert client.delete(f"/api/v1/subscribers/{made.id}", headers=auth).status_code == 204
    before = row_counts(db)
    for mode in ({"confirm": True}, {"consent": {"source": "phone call"}}):
        response = client.post(
            "/api/v1/subscribers",
            json={"email": "x@example.com", "newsletters": ["daily"], **mode},
            headers=auth,
        )
        assert assert_problem(response, 409)["refused"] == {"daily": reason}
    assert row_counts(db) == before and mails(settings) == []


def test_bad_adds_are_problems_and_store_nothing(
    client: FlaskClient, db: Session, settings: Settings, lists: Lists, auth: dict[str, str]
) -> None:
    base = {"email": "ok@example.com", "newsletters": ["daily"]}
    cases: list[tuple[dict[str, Any], int, str | None]] = [
        (base, 400, "confirm"),  # neither mode
        ({**base, "confirm": True, "consent": {"source": "x"}}, 400, "confirm"),
        ({**base, "confirm": True, "topics": ["World"]}, 400, "confirm"),
        ({**base, "email": "not an address", "confirm": True}, 400, "email"),
        ({**base, "newsletters": ["nope"], "confirm": True}, 404, "newsletters"),
        ({**base, "newsletters": [], "confirm": True}, 400, "newsletters"),
        ({**base, "consent": {"source": ""}}, 400, "consent.source"),
        ({**base, "consent": {"source": "x"}, "topics": ["Sport"]}, 400, "topics"),
        ({**base, "consent": {"source": "x"}, "timezone": "Mars/Base"}, 400, "timezone"),
        ({**base, "consent": {"source": "x"}, "name": "a\nb"}, 400, "name"),
        ({**base, "confirm": True, "bogus": 1}, 400, "bogus"),
        ({**base, "confirm": False}, 400, "confirm"),
    ]
    before = row_counts(db)
    for body, status, field in cases:
        response = client.post("/api/v1/subscribers", json=body, headers=auth)
        problem = assert_problem(response, status)
        assert problem.get("field") == field, (body, problem)
    assert row_counts(db) == before and mails(settings) == []


# --- Editing, unsubscribing, erasing -------------------------------------------------------------


def test_edit_with_if_match(
    client: FlaskClient, db: Session, lists: Lists, auth: dict[str, str]
) -> None:
    subscriber = add_subscriber(
        db, "ann@example.com", SubscriberStatus.ACTIVE, [lists.daily, lists.offers]
    )
    url = f"/api/v1/subscribers/{subscriber.id}"
    tag = client.get(url, headers=auth).headers["ETag"]
    edit = {"name": "Ann Lee", "topics": ["Politics"], "frequencies": {"daily": "weekly"}}
    changed = client.patch(url, json=edit, headers={**auth, "If-Match": tag})
    assert changed.status_code == 200, changed.get_json()
    body = changed.get_json()
    assert body["reader"]["name"] == "Ann Lee" and body["reader"]["topics"] == ["Politics"]
    assert {s["newsletter"]: s["frequency"] for s in body["subscriptions"]}["daily"] == "weekly"
    assert changed.headers["ETag"] != tag
    stale = client.patch(url, json={"name": "Other"}, headers={**auth, "If-Match": tag})
    assert assert_problem(stale, 412)["etag"] == changed.headers["ETag"]
    assert reader(db, "ann@example.com").name == "Ann Lee"  # type: ignore[union-attr]
    assert client.patch(url, json={"timezone": "Asia/Tokyo"}, headers=auth).status_code == 200

    assert_problem(client.patch(url, json={"timezone": "Mars/Base"}, headers=auth), 400)
    campaign = client.patch(url, json={"frequencies": {"offers": "daily"}}, headers=auth)
    assert "campaign" in assert_problem(campaign, 400)["detail"]
    assert_problem(client.patch(url, json={"frequencies": {"weekend": "daily"}}, headers=auth), 404)
    assert_problem(client.patch(url, json={"topics": ["Sport"]}, headers=auth), 400)
    assert_problem(client.patch("/api/v1/subscribers/99999", json={}, headers=auth), 404)
    assert reader(db, "ann@example.com").timezone == "Asia/Tokyo"  # type: ignore[union-attr]


def test_unsubscribe_from_one_list_or_all(
    client: FlaskClient, db: Session, lists: Lists, auth: dict[str, str]
) -> None:
    subscriber = add_subscriber(
        db, "ann@example.com", SubscriberStatus.ACTIVE, [lists.daily, lists.offers]
    )
    url = f"/api/v1/subscribers/{subscriber.id}/unsubscribe"
    one = client.post(url, json={"newsletter": "offers"}, headers=auth)
    assert one.status_code == 200 and one.get_json()["left"] == ["offers"]
    assert one.get_json()["subscriber"]["reader"]["status"] == "active"
    assert client.post(url, json={"newsletter": "offers"}, headers=auth).get_json()["left"] == []
    everything = client.post(url, headers=auth)  # no body: every list
    assert everything.get_json()["left"] == ["daily"]
    assert everything.get_json()["subscriber"]["reader"]["status"] == "unsubscribed"
    assert_problem(client.post(url, json={"newsletter": "nope"}, headers=auth), 404)


def test_erase_keeps_only_the_suppression_hash(
    client: FlaskClient, db: Session, lists: Lists, auth: dict[str, str]
) -> None:
    subscriber = add_subscriber(db, "ann@example.com", SubscriberStatus.ACTIVE, [lists.daily])
    url = f"/api/v1/subscribers/{subscriber.id}"
    response = client.delete(url, headers=auth)
    assert response.status_code == 204 and response.get_data() == b""
    assert reader(db, "ann@example.com") is None
    assert_problem(client.get(url, headers=auth), 404)
    assert_problem(client.delete(url, headers=auth), 404)
    [entry] = client.get("/api/v1/suppressions", headers=auth).get_json()["items"]
    assert entry["email_hash"] == email_hash("ann@example.com") and entry["reason"] == "erased"
    assert "ann@example.com" not in str(entry)


# --- The suppression list ------------------------------------------------------------------------


def test_suppress_an_address_and_page_the_list(
    client: FlaskClient, db: Session, lists: Lists, auth: dict[str, str]
) -> None:
    ann = add_subscriber(db, "ann@example.com", SubscriberStatus.ACTIVE, [lists.daily])
    first = client.post(
        "/api/v1/suppressions", json={"email": "Ann@example.com", "detail": "phone"}, headers=auth
    )
    assert first.status_code == 201, first.get_json()
    assert first.get_json()["subscriber_id"] == ann.id
    assert first.get_json()["suppression"]["reason"] == "editor"
    assert reader(db, "ann@example.com").status == SubscriberStatus.UNSUBSCRIBED  # type: ignore[union-attr]
    again = client.post("/api/v1/suppressions", json={"email": "ann@example.com"}, headers=auth)
    assert again.status_code == 200
    assert again.get_json()["suppression"]["id"] == first.get_json()["suppression"]["id"]
    for n in range(3):
        stranger = {"email": f"s{n}@example.com"}
        reply = client.post("/api/v1/suppressions", json=stranger, headers=auth).get_json()
        assert reply["subscriber_id"] is None
    assert db.scalar(select(Subscriber).where(Subscriber.email == "s0@example.com")) is None
    pages, after = [], ""
    while True:
        body = client.get(f"/api/v1/suppressions?limit=3{after}", headers=auth).get_json()
        pages.append([e["email_hash"] for e in body["items"]])
        if body["next"] is None:
            break
        after = f"&after={body['next']}"
    newest_first = [email_hash(f"s{n}@example.com") for n in (2, 1, 0)]
    assert pages == [newest_first, [email_hash("ann@example.com")]]
    assert_problem(client.post("/api/v1/suppressions", json={"email": "x"}, headers=auth), 400)
    assert len(db.scalars(select(Suppression)).all()) == 4


# --- Scopes --------------------------------------------------------------------------------------


def test_a_read_token_reads_but_does_not_write(
    client: FlaskClient, db: Session, lists: Lists
) -> None:
    subscriber = add_subscriber(db, "ann@example.com", SubscriberStatus.ACTIVE, [lists.daily])
    read = bearer(db, "subscribers:read")
    assert client.get(f"/api/v1/subscribers/{subscriber.id}", headers=read).status_code == 200
    assert client.get("/api/v1/suppressions", headers=read).status_code == 200
    before = row_counts(db)
    for method, path in [
        ("POST", "/api/v1/subscribers"),
        ("PATCH", f"/api/v1/subscribers/{subscriber.id}"),
        ("POST", f"/api/v1/subscribers/{subscriber.id}/unsubscribe"),
        ("DELETE", f"/api/v1/subscribers/{subscriber.id}"),
        ("POST", "/api/v1/suppressions"),
    ]:
        response = client.open(path, method=method, json={"email": "a@example.com"}, headers=read)
        assert assert_problem(response, 403)["scope"] == "subscribers:write", path
    assert row_counts(db) == before
    other = bearer(db, "newsletters:read")
    refused = client.get("/api/v1/subscribers", headers=other)
    assert assert_problem(refused, 403)["scope"] == "subscribers:read"


# --- Races, on PostgreSQL ------------------------------------------------------------------------


@pytest.fixture
def pg_api(settings: Settings) -> Iterator[tuple[Flask, dict[str, str], Session]]:
    """The app on a fresh PostgreSQL database with the usual lists and a token of every scope."""
    with migrated_postgres_database() as url:
        pg = replace(settings, database_url=url)
        app = make_eager(create_app(pg))
        db = get_sessionmaker(url)()
        make_lists(db)
        yield app, bearer(db), db
        db.close()
        dispose_engines()


def run_together(count: int, call: Any) -> list[int]:
    """Run ``call(n)`` in ``count`` threads released at once; their statuses."""
    barrier = threading.Barrier(count)
    statuses: list[int] = []

    def run(n: int) -> None:
        barrier.wait()
        statuses.append(call(n))

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


def test_concurrent_adds_of_one_address_make_one_reader(
    pg_api: tuple[Flask, dict[str, str], Session],
) -> None:
    app, auth, db = pg_api
    body = {"email": "race@example.com", "newsletters": ["daily"], "consent": {"source": "x"}}
    statuses = run_together(
        4,
        lambda n: (
            app.test_client().post("/api/v1/subscribers", json=body, headers=auth).status_code
        ),
    )
    assert statuses.count(201) == 1 and set(statuses) == {201, 409}, statuses
    assert len(db.scalars(select(Subscriber)).all()) == 1


def test_concurrent_edits_with_one_etag_apply_once(
    pg_api: tuple[Flask, dict[str, str], Session],
) -> None:
    app, auth, db = pg_api
    made = app.test_client().post(
        "/api/v1/subscribers",
        json={"email": "ann@example.com", "newsletters": ["daily"], "consent": {"source": "x"}},
        headers=auth,
    )
    url, tag = made.headers["Location"], made.headers["ETag"]
    statuses = run_together(
        4,
        lambda n: (
            app.test_client()
            .patch(url, json={"name": f"Edit {n}"}, headers={**auth, "If-Match": tag})
            .status_code
        ),
    )
    assert sorted(statuses) == [200, 412, 412, 412], statuses
    db.expire_all()
    assert (db.scalar(select(Subscriber.name)) or "").startswith("Edit ")
