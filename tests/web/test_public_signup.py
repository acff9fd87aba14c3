"""The signup path through the web: page, embed, cross-site post, confirmation, welcome mail."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

from newsletter import create_app
from newsletter.settings import Settings
from newsletter.store.db import dispose_engines
from newsletter.store.models import (
    ConsentRecord,
    Newsletter,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
)
from tests.support.readers import (
    Lists,
    csrf_token,
    html_part,
    link_in,
    mails,
    mails_to,
    make_lists,
    path_of,
    row_counts,
    text_part,
)
from tests.support.smtp import SMTPSink


def make_eager(app: Flask) -> Flask:
    """Run enqueued tasks in-process so a web test can read the mail they produce."""
    celery = app.extensions["celery"]
    celery.conf.task_always_eager = True
    celery.conf.task_eager_propagates = True
    return app


@pytest.fixture
def lists(db: Session) -> Lists:
    return make_lists(db)


@pytest.fixture
def eager_client(app: Flask, lists: Lists) -> FlaskClient:
    return make_eager(app).test_client()


@pytest.fixture
def app_with() -> Iterator[Callable[..., Flask]]:
    """Build an app over modified settings (for limits, caps, SMTP)."""

    def build(settings: Settings, **changes: Any) -> Flask:
        return make_eager(create_app(replace(settings, **changes)))

    yield build
    dispose_engines()


def signup(client: FlaskClient, address: str, *slugs: str, **extra: str) -> TestResponse:
    data: dict[str, Any] = {"csrf_token": csrf_token(client), "email": address}
    if slugs:
        data["newsletter"] = list(slugs)
    data.update(extra)
    return client.post("/", data=data)


def landed(client: FlaskClient, response: TestResponse, page: str = "/check-inbox") -> str:
    """The "check your inbox" page a signup's 303 leads to (POST/redirect/GET)."""
    assert response.status_code == 303, response.get_data(as_text=True)[:500]
    assert response.headers["Location"] == page
    shown = client.get(page)
    assert shown.status_code == 200
    return shown.get_data(as_text=True)


def confirm_path(settings: Settings, address: str) -> str:
    found = mails_to(settings, address)
    assert found, f"no mail to {address}"
    return path_of(link_in(found[-1], "/confirm/"))


# --- the page ----------------------------------------------------------------------------------


def test_signup_page_is_a_real_stay_in_touch_box(client: FlaskClient, lists: Lists) -> None:
    response = client.get("/")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "Stay in touch" in html
    assert "To be updated with all the latest news, offers and special announcements." in html
    assert "The Daily Brief" in html
    assert '<link rel="stylesheet" href="/static/site.css">' in html
    # Public lists in position order, none ticked, the private list absent.
    order = [m for m in re.findall(r'value="(daily|weekend|offers|staff)"', html)]
    assert order == ["daily", "weekend", "offers"]
    assert " checked" not in html
    # Labelled inputs, a live region for messages, the consent text.
    assert '<label class="field__label" for="email">Email address</label>' in html
    assert 'aria-live="assertive"' in html
    assert "We keep a record of your consent" in html
    # The honeypot is hidden from people, screen readers and the tab order.
    honeypot = re.search(r'<div class="hp" aria-hidden="true">.*?</div>', html, re.S)
    assert honeypot is not None
    assert 'tabindex="-1"' in honeypot.group(0) and 'autocomplete="off"' in honeypot.group(0)
    css = client.get("/static/site.css")
    assert css.status_code == 200 and b".signup" in css.get_data()
    css.close()


@pytest.mark.parametrize("page", ["/", "/embed"])
def test_every_card_reads_alike(client: FlaskClient, lists: Lists, page: str) -> None:
    html = client.get(page).get_data(as_text=True)
    # No "Daily digest" label under a list's name; a quiet line says how often, on every card.
    assert "choice__meta" not in html and " digest</span>" not in html
    often = re.findall(r'<span class="choice__often">([^<]+)</span>', html)
    assert often == ["Every day", "Every week", "Now and then"]


def test_signup_link_for_one_list_preticks_only_that_list(
    client: FlaskClient, lists: Lists
) -> None:
    html = client.get("/?newsletter=offers").get_data(as_text=True)
    ticked = re.findall(r'value="([a-z]+)" checked', html)
    assert ticked == ["offers"]
    # An unknown slug in a link just ticks nothing.
    assert " checked" not in client.get("/?newsletter=nope").get_data(as_text=True)


def test_single_public_list_needs_no_checkbox(client: FlaskClient, db: Session) -> None:

    db.add(Newsletter(slug="only", name="The Only List"))
    db.commit()
    html = client.get("/").get_data(as_text=True)
    assert 'type="checkbox"' not in html
    assert '<input type="hidden" name="newsletter" value="only">' in html


# --- double opt-in -----------------------------------------------------------------------------


def test_signup_confirm_welcome_end_to_end(
    eager_client: FlaskClient, settings: Settings, db: Session, lists: Lists
) -> None:
    response = signup(eager_client, "Reader@Example.com", "daily", "offers", name="Rita")
    assert "Check your inbox" in landed(eager_client, response)
    subscriber = db.scalar(select(Subscriber).where(Subscriber.email_key == "reader@example.com"))
    assert subscriber is not None and subscriber.status == SubscriberStatus.PENDING

    [confirmation] = mails(settings)
    assert confirmation["To"] == "Reader@example.com"
    assert confirmation.get_content_type() == "multipart/alternative"
    assert "Morning Briefing" in text_part(confirmation)
    path = confirm_path(settings, "reader@example.com")

    # Opening the link (what a mail scanner does) changes nothing.
    before = row_counts(db)
    page = eager_client.get(path)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'id="confirm-form" method="post"' in html
    assert "Yes, confirm my subscription" in html
    assert "<script" not in html, "no script may press the button for a scanner that runs it"
    assert not re.search(r"\son[a-z]+=", html), "no inline event handlers"
    assert row_counts(db) == before
    db.expire_all()
    assert db.get(Subscriber, subscriber.id).status == SubscriberStatus.PENDING  # type: ignore[union-attr]

    done = eager_client.post(path)
    assert done.status_code == 200
    assert "You're subscribed" in done.get_data(as_text=True)
    db.expire_all()
    subscriber = db.get(Subscriber, subscriber.id)
    assert subscriber is not None and subscriber.status == SubscriberStatus.ACTIVE
    assert {s.status for s in subscriber.subscriptions} == {SubscriptionStatus.ACTIVE}
    record = db.scalar(select(ConsentRecord).where(ConsentRecord.subscriber_id == subscriber.id))
    assert record is not None and record.confirmed_at is not None
    assert record.signup_ip == "127.0.0.1" and record.confirm_ip == "127.0.0.1"

    welcome = mails(settings)[-1]
    assert welcome["Subject"] == "Welcome to The Daily Brief"
    assert "Welcome, Rita!" in html_part(welcome)
    assert welcome["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "/unsubscribe/" in welcome["List-Unsubscribe"]
    assert welcome["List-Id"] == "Morning Briefing <daily.news.example.com>"
    assert "/preferences/" in text_part(welcome)

    # A second click: the same friendly page, no second welcome.
    again = eager_client.post(path)
    assert again.status_code == 200 and "You're subscribed" in again.get_data(as_text=True)
    assert len(mails(settings)) == 2
    assert eager_client.get(path).status_code == 200  # the link still shows a page


@pytest.mark.parametrize(
    ("endpoint", "page"),
    [("/", "/check-inbox"), ("/embed", "/embed/check-inbox"), ("/subscribe", "/check-inbox")],
)
def test_a_signup_redirects_so_a_reload_posts_nothing(
    eager_client: FlaskClient, settings: Settings, db: Session, endpoint: str, page: str
) -> None:
    data = {"email": "reload@example.com", "newsletter": "daily"}
    if endpoint == "/":
        data["csrf_token"] = csrf_token(eager_client)
    response = eager_client.post(endpoint, data=data)
    assert "Check your inbox" in landed(eager_client, response, page)
    before, sent = row_counts(db), len(mails(settings))
    # A reload of the answer is a GET of the landing page: no second signup, no second mail.
    for _ in range(2):
        again = eager_client.get(page)
        assert again.status_code == 200 and "Check your inbox" in again.get_data(as_text=True)
    assert row_counts(db) == before and len(mails(settings)) == sent == 1
    # The landing page names no address: it is one page for everybody.
    assert "reload@" not in eager_client.get(page).get_data(as_text=True)


def test_confirmation_mail_never_carries_the_typed_name(
    eager_client: FlaskClient, settings: Settings, lists: Lists
) -> None:
    spam = "Cheap pills at spam-shop dot example"
    signup(eager_client, "victim@example.com", "daily", name=spam)
    [confirmation] = mails(settings)
    raw = confirmation.as_string()
    assert spam not in raw and "spam-shop" not in raw
    assert confirmation["To"] == "victim@example.com"


def test_expired_confirmation_link_is_410_offering_signup(
    eager_client: FlaskClient, app: Flask, settings: Settings, db: Session, lists: Lists
) -> None:
    import time

    signup(eager_client, "late@example.com", "daily")
    path = confirm_path(settings, "late@example.com")
    time.sleep(1.1)
    app.extensions["newsletter.settings"] = replace(settings, confirm_expiry_days=0)
    before = row_counts(db)
    for response in (eager_client.get(path), eager_client.post(path)):
        assert response.status_code == 410
        html = response.get_data(as_text=True)
        assert "expired" in html and "Sign up again" in html
    assert row_counts(db) == before


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-4] + ("AAAA" if not t.endswith("AAAA") else "BBBB"),  # bad signature
        lambda t: "not-a-token",
        lambda t: t.split(".")[0],  # payload only
    ],
)
def test_tampered_confirmation_link_is_400(
    eager_client: FlaskClient, settings: Settings, db: Session, lists: Lists, mangle: Any
) -> None:
    signup(eager_client, "tamper@example.com", "daily")
    path = confirm_path(settings, "tamper@example.com")
    token = path.rsplit("/", 1)[1]
    before = row_counts(db)
    bad = f"/confirm/{mangle(token)}"
    for response in (eager_client.get(bad), eager_client.post(bad)):
        assert response.status_code == 400
        assert "This link does not work" in response.get_data(as_text=True)
    assert row_counts(db) == before


# --- embed and cross-site post -------------------------------------------------------------------


def test_embed_page_may_be_framed_by_the_news_site_only(client: FlaskClient, lists: Lists) -> None:
    response = client.get("/embed?newsletter=daily")
    assert response.status_code == 200
    assert "X-Frame-Options" not in response.headers
    csp = response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'self' https://news.example.com" in csp
    html = response.get_data(as_text=True)
    assert 'action="/embed"' in html and "Stay in touch" in html
    assert 'name="csrf_token"' not in html
    # Made for one list: it offers just that one, with the button beside the address.
    assert '<input type="hidden" name="newsletter" value="daily">' in html
    assert 'type="checkbox"' not in html
    # Without a list it offers every public one, none ticked.
    html = client.get("/embed").get_data(as_text=True)
    assert re.findall(r'type="checkbox" name="newsletter"', html) and " checked" not in html
    # Every other page refuses frames.
    assert client.get("/").headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in client.get("/").headers["Content-Security-Policy"]


def test_embed_post_needs_no_csrf_and_answers_compactly(
    eager_client: FlaskClient, settings: Settings, lists: Lists
) -> None:
    response = eager_client.post(
        "/embed", data={"email": "frame@example.com", "newsletter": "daily", "embed": "1"}
    )
    html = landed(eager_client, response, "/embed/check-inbox")
    assert "Check your inbox" in html and 'class="embed"' in html
    # The landing page stays in the news site's frame.
    assert "X-Frame-Options" not in eager_client.get("/embed/check-inbox").headers
    assert len(mails_to(settings, "frame@example.com")) == 1


def test_signup_page_post_requires_csrf(client: FlaskClient, db: Session, lists: Lists) -> None:
    before = row_counts(db)
    response = client.post("/", data={"email": "nocsrf@example.com", "newsletter": "daily"})
    assert response.status_code == 400
    assert "Form expired" in response.get_data(as_text=True)
    assert row_counts(db) == before


def test_cross_site_post_redirects_to_allowed_next(
    eager_client: FlaskClient, settings: Settings, lists: Lists
) -> None:
    response = eager_client.post(
        "/subscribe",
        data={
            "email": "site@example.com",
            "newsletter": "daily",
            "next": "https://news.example.com/politics/story?id=7#signup",
        },
        headers={"Referer": "https://news.example.com/politics/story?id=7"},
    )
    assert response.status_code == 303
    assert response.headers["Location"] == (
        "https://news.example.com/politics/story?id=7&subscribed=1#signup"
    )
    assert len(mails_to(settings, "site@example.com")) == 1


def test_cross_site_post_without_list_uses_the_main_list(
    eager_client: FlaskClient, db: Session, lists: Lists
) -> None:
    response = eager_client.post(
        "/subscribe",
        data={"email": "plain@example.com"},
        headers={"Referer": "https://news.example.com/"},
    )
    assert response.status_code == 303
    record = db.scalar(select(ConsentRecord))
    assert record is not None
    assert record.newsletter_slugs == ["daily"]
    assert record.source == "https://news.example.com/"


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/",
        "///evil.example/",
        "/\\evil.example/",
        "https:/\\evil.example",
        "https://news.example.com\\@evil.example/",
        "https://news.example.com@evil.example/",
        "https://user:pw@news.example.com/",
        "https://news.example.com.evil.example/",
        "https://evil.example/?https://news.example.com/",
        "https://evil.example#@news.example.com",
        "javascript:alert(1)//news.example.com",
        "data:text/html,hi",
        "ftp://news.example.com/",
        "https://news.example.com./",
        "https://news.example.com:99999/",
        "/relative/path",
        "news.example.com/path",
        "https://news.example.com /x",
        "https://n\u0435ws.example.com/",  # a Cyrillic letter that looks like "e"
        "https://news.example.com%2F@evil.example/",
    ],
)
def test_no_open_redirect(
    eager_client: FlaskClient, settings: Settings, lists: Lists, target: str
) -> None:
    response = eager_client.post(
        "/subscribe", data={"email": "redir@example.com", "newsletter": "daily", "next": target}
    )
    # Only ever to our own page, never to the target.
    assert "Check your inbox" in landed(eager_client, response), target


def test_allowed_next_accepts_http_and_case(eager_client: FlaskClient, lists: Lists) -> None:
    for target, expected in [
        ("http://NEWS.example.com/a", "http://news.example.com/a?subscribed=1"),
        ("https://news.example.com", "https://news.example.com?subscribed=1"),
        ("https://news.example.com/?subscribed=0", "https://news.example.com/?subscribed=1"),
    ]:
        response = eager_client.post(
            "/subscribe", data={"email": "ok@example.com", "newsletter": "daily", "next": target}
        )
        assert response.status_code == 303
        assert response.headers["Location"] == expected


# --- honeypot, limits, cap -----------------------------------------------------------------------


def test_honeypot_answers_like_success_and_does_nothing(
    eager_client: FlaskClient, settings: Settings, db: Session, lists: Lists
) -> None:
    real = signup(eager_client, "human@example.com", "daily")
    before = row_counts(db)
    mail_count = len(mails(settings))
    bot = signup(eager_client, "bot@example.com", "daily", website="http://spam.example")
    assert bot.status_code == real.status_code == 303
    assert bot.headers["Location"] == real.headers["Location"] == "/check-inbox"
    assert bot.get_data() == real.get_data()
    assert row_counts(db) == before
    assert len(mails(settings)) == mail_count
    # Same for the redirecting endpoint.
    data = {"email": "bot@example.com", "next": "https://news.example.com/", "website": "x"}
    response = eager_client.post("/subscribe", data=data)
    assert response.status_code == 303
    assert response.headers["Location"] == "https://news.example.com/?subscribed=1"
    assert row_counts(db) == before


def test_flood_from_one_ip_is_429(
    app_with: Callable[..., Flask], settings: Settings, db: Session, lists: Lists
) -> None:
    client = app_with(settings, signup_rate_limit="3/minute").test_client()
    token = csrf_token(client)
    statuses = [
        client.post(
            "/", data={"csrf_token": token, "email": f"f{i}@example.com", "newsletter": "daily"}
        ).status_code
        for i in range(3)
    ]
    assert statuses == [303, 303, 303]
    before = row_counts(db)
    blocked = client.post("/subscribe", data={"email": "f9@example.com", "newsletter": "daily"})
    assert blocked.status_code == 429
    assert "Too many requests" in blocked.get_data(as_text=True)
    assert row_counts(db) == before
    assert client.get("/").status_code == 200  # reading the page is never limited


def test_flood_for_one_address_is_429(
    app_with: Callable[..., Flask], settings: Settings, db: Session, lists: Lists
) -> None:
    client = app_with(settings, address_rate_limit="2/hour").test_client()
    assert signup(client, "target@example.com", "daily").status_code == 303
    assert signup(client, "TARGET@example.com", "daily").status_code == 303
    before = row_counts(db)
    third = signup(client, "target@example.com", "daily")
    assert third.status_code == 429
    assert row_counts(db) == before
    assert signup(client, "someone-else@example.com", "daily").status_code == 303


def test_daily_mail_cap_stops_mail_silently(
    app_with: Callable[..., Flask], settings: Settings, lists: Lists
) -> None:
    client = app_with(settings, signup_mails_per_day=2).test_client()
    responses = [signup(client, "capped@example.com", "daily") for _ in range(4)]
    assert {r.status_code for r in responses} == {303}
    assert len({r.get_data() for r in responses}) == 1
    assert len(mails_to(settings, "capped@example.com")) == 2


def test_confirmation_delivered_over_real_smtp(
    app_with: Callable[..., Flask],
    smtp_settings: Settings,
    smtp_sink: SMTPSink,
    lists: Lists,
) -> None:
    client = app_with(smtp_settings).test_client()
    assert signup(client, "smtp@example.com", "weekend").status_code == 303
    [received] = smtp_sink.wait_for(1)
    assert received.rcpt_tos == ["smtp@example.com"]
    assert received.mail_from == "newsletter@news.example.com"
    message = received.message
    assert message["Subject"] == "Please confirm your subscription to The Daily Brief"
    assert message.get_content_type() == "multipart/alternative"
    assert b"\r\n" in received.data
    link = link_in(message, "/confirm/")
    assert link.startswith("http://127.0.0.1:5000/confirm/")
    assert client.post(path_of(link)).status_code == 200
    [_, welcome] = smtp_sink.wait_for(2)
    assert welcome.message["Subject"] == "Welcome to The Daily Brief"
    assert "Weekend Reads" in text_part(welcome.message)


@pytest.mark.parametrize("endpoint", ["/", "/embed", "/subscribe"])
@pytest.mark.parametrize("sent", [None, [""], ["", " "]])
def test_no_list_ticked_means_the_first_public_list_on_every_form(
    eager_client: FlaskClient, db: Session, lists: Lists, endpoint: str, sent: list[str] | None
) -> None:
    data: dict[str, Any] = {"email": "default@example.com"}
    if sent is not None:
        data["newsletter"] = sent
    if endpoint == "/":
        data["csrf_token"] = csrf_token(eager_client)
    assert eager_client.post(endpoint, data=data).status_code == 303
    record = db.scalar(select(ConsentRecord))
    assert record is not None and record.newsletter_slugs == [lists.daily.slug]


@pytest.mark.parametrize("page", ["/", "/embed"])
def test_the_form_says_what_no_list_means(client: FlaskClient, lists: Lists, page: str) -> None:
    html = client.get(page).get_data(as_text=True)
    hint = "Leave all unticked for Morning Briefing."
    assert f'<p class="choices__hint" id="newsletter-hint">{hint}</p>' in html
    assert 'aria-describedby="newsletter-hint"' in html
    # A form for one list has nothing to tick, so nothing to explain.
    assert "newsletter-hint" not in client.get("/embed?newsletter=offers").get_data(as_text=True)


def test_a_blank_hidden_list_on_the_news_site_means_its_main_list(
    eager_client: FlaskClient, db: Session, lists: Lists
) -> None:
    response = eager_client.post(
        "/subscribe", data={"email": "reader@example.com", "newsletter": ""}
    )
    assert response.status_code == 303
    slugs = db.scalars(
        select(Newsletter.slug).join(Subscription, Subscription.newsletter_id == Newsletter.id)
    ).all()
    assert slugs == [lists.daily.slug]


def test_one_inbox_has_one_address_limit_whatever_its_spelling(
    app_with: Callable[..., Flask], settings: Settings, db: Session, lists: Lists
) -> None:
    client = app_with(settings, address_rate_limit="2/hour").test_client()
    assert signup(client, "A.B.c+x@GoogleMail.com", "daily").status_code == 303
    assert signup(client, "abc@gmail.com", "daily").status_code == 303
    before = row_counts(db)
    third = signup(client, "a.b.c+other@gmail.com", "daily")
    assert third.status_code == 429
    assert row_counts(db) == before
    # The two spellings are still two readers, stored as typed.
    stored = set(db.scalars(select(Subscriber.email)))
    assert stored == {"A.B.c+x@googlemail.com", "abc@gmail.com"}
    assert signup(client, "abcd@gmail.com", "daily").status_code == 303
