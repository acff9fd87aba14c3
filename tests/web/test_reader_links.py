"""What the links in our mails grant: choices yes, personal data only by a fresh mailed link.

A reader signs up and confirms from a distinctive IP address and browser; every link of the
welcome mail and of a digest, and every page those links lead to, is fetched (GET, as a mail
scanner would) and none shows that IP or browser. Only "Email me my data" on the preferences
page mails a one-hour link that does. "Log out all links" revokes the old ones (but for leaving),
and a reader who left everything gets lists back only through a new confirmation.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from html import unescape

import pytest
from flask import Flask
from flask.testing import FlaskClient
from itsdangerous import TimestampSigner
from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.content.selection import load_readers
from newsletter.issues.lifecycle import create_digest
from newsletter.issues.rendering import prepare_issue
from newsletter.settings import Settings
from newsletter.store.models import ConsentRecord, Subscriber, SubscriberStatus, SubscriptionStatus
from tests.support.dispatching import posts
from tests.support.readers import (
    URL_RE,
    Lists,
    csrf_token,
    html_part,
    link_in,
    mails_to,
    make_lists,
    path_of,
    subs_of,
    text_part,
)

READER = "crawl.me@example.com"
IP = "198.51.100.77"
AGENT = "CrawlProbe/7.3 (distinctive)"
HREF = re.compile(r'href="([^"]+)"')


@pytest.fixture
def lists(db: Session) -> Lists:
    return make_lists(db)


@pytest.fixture
def browser(app: Flask, lists: Lists) -> Iterator[FlaskClient]:
    """The reader's browser: a fixed IP and user agent; tasks run in-process (eager Celery)."""
    celery = app.extensions["celery"]
    celery.conf.task_always_eager = True
    celery.conf.task_eager_propagates = True
    client = app.test_client()
    client.environ_base.update({"REMOTE_ADDR": IP, "HTTP_USER_AGENT": AGENT})
    yield client


def signed_up(
    browser: FlaskClient, settings: Settings, db: Session, lists: Lists, *more: int
) -> Subscriber:
    """Sign up (to the daily list and ``more``) and confirm through the pages, as a reader would."""
    form = {
        "csrf_token": csrf_token(browser),
        "email": READER,
        "name": "Crawl",
        "newsletter": [str(lists.daily.id), *map(str, more)],
    }
    assert browser.post("/", data=form).status_code in (200, 303)
    confirm = path_of(link_in(mails_to(settings, READER)[-1], "/confirm/"))
    assert browser.post(confirm).status_code == 200
    subscriber = db.scalar(select(Subscriber).where(Subscriber.email_key == READER))
    assert subscriber is not None and subscriber.status == SubscriberStatus.ACTIVE
    record = db.scalar(select(ConsentRecord).where(ConsentRecord.subscriber_id == subscriber.id))
    assert record is not None and record.signup_ip == IP and record.signup_user_agent == AGENT
    return subscriber


def digest_for(
    app: Flask, db: Session, settings: Settings, lists: Lists, subscriber: Subscriber
) -> bytes:
    """The bytes of the reader's mail of a digest of fresh posts."""
    posts(db, 3, categories=(("World",),))
    issue = create_digest(db, settings, lists.daily)
    db.commit()
    (reader,) = load_readers(db, issue, [subscriber.id])
    mail = prepare_issue(db, settings, issue.id, env=app.jinja_env).message_for(reader)
    assert mail is not None
    return mail.message


def urls_of(message: EmailMessage) -> set[str]:
    """Every http(s) URL in both parts of a mail."""
    found = set(URL_RE.findall(text_part(message)))
    found |= {unescape(u) for u in HREF.findall(html_part(message))}
    return {u.rstrip(".,)") for u in found if u.startswith("http")}


def crawl(client: FlaskClient, settings: Settings, start: set[str]) -> dict[str, str]:
    """GET every link of ours reachable from ``start`` (two hops), as a link scanner would."""
    base = settings.base_url.rstrip("/")
    seen: dict[str, str] = {}
    frontier = {u for u in start if u.startswith(base)}
    for _ in range(3):
        next_round: set[str] = set()
        for url in frontier - seen.keys():
            response = client.get(path_of(url))
            assert response.status_code < 500, url
            body = response.get_data(as_text=True)
            response.close()  # static files are streamed from disk
            seen[url] = body
            for href in HREF.findall(body):
                href = unescape(href)
                if href.startswith("/") and not href.startswith("//"):
                    next_round.add(base + href)
                elif href.startswith(base):
                    next_round.add(href)
        frontier = next_round
    return seen


def test_no_link_in_our_mails_leads_to_the_consent_ip_or_browser(
    browser: FlaskClient, settings: Settings, db: Session, lists: Lists
) -> None:
    subscriber = signed_up(browser, settings, db, lists)
    welcome = mails_to(settings, READER)[-1]
    assert "Welcome" in str(welcome["Subject"])
    raw = digest_for(browser.application, db, settings, lists, subscriber)
    digest = message_from_bytes(raw, policy=policy.default)
    assert isinstance(digest, EmailMessage)
    start = urls_of(welcome) | urls_of(digest)
    assert any("/preferences/" in u for u in start) and any("/unsubscribe/" in u for u in start)

    scanner = browser.application.test_client()  # another client: no cookie of the reader's
    pages = crawl(scanner, settings, start)
    assert any("/preferences/" in u for u in pages)
    for url, body in pages.items():
        assert IP not in body and AGENT not in body, url
    for message in (welcome, digest):
        assert IP not in message.as_string() and AGENT not in message.as_string()
    # Fetching every link changed nothing: the reader is still subscribed.
    assert {s.status for s in subs_of(db, subscriber.id).values()} == {SubscriptionStatus.ACTIVE}


def test_email_me_my_data_mails_a_one_hour_link_to_the_address(
    browser: FlaskClient,
    settings: Settings,
    db: Session,
    lists: Lists,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    signed_up(browser, settings, db, lists)
    preferences = path_of(link_in(mails_to(settings, READER)[-1], "/preferences/"))
    token = csrf_token(browser, preferences)
    # The button is a CSRF-protected POST: another site cannot make the reader's browser ask.
    assert browser.post(preferences + "/data").status_code == 400
    asked = browser.post(preferences + "/data", data={"csrf_token": token})
    assert asked.status_code == 200 and "Check your inbox" in asked.get_data(as_text=True)
    mail = mails_to(settings, READER)[-1]
    assert "data" in str(mail["Subject"])
    data_path = path_of(link_in(mail, "/data/"))
    page = browser.get(data_path)
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"
    assert IP in page.get_data(as_text=True) and AGENT in unescape(page.get_data(as_text=True))
    export = browser.get(data_path + "/export.json")
    assert export.status_code == 200 and export.json is not None
    assert export.json["consent_records"][0]["signup_ip"] == IP

    # An hour later the link is dead; so it is at once after "log out all links".
    later = time.time() + 3601
    with monkeypatch.context() as m:
        m.setattr(TimestampSigner, "get_timestamp", lambda self: int(later))
        m.setattr(time, "time", lambda: later)
        expired = browser.get(data_path)
    assert expired.status_code == 410 and IP not in expired.get_data(as_text=True)
    browser.post(preferences + "/links", data={"csrf_token": token})
    assert browser.get(data_path).status_code == 404


def test_log_out_all_links_mails_a_new_one_and_old_links_may_only_leave(
    browser: FlaskClient, settings: Settings, db: Session, lists: Lists
) -> None:
    subscriber = signed_up(browser, settings, db, lists)
    welcome = mails_to(settings, READER)[-1]
    old_preferences = path_of(link_in(welcome, "/preferences/"))
    old_unsubscribe = path_of(link_in(welcome, "/unsubscribe/"))
    token = csrf_token(browser, old_preferences)
    done = browser.post(old_preferences + "/links", data={"csrf_token": token})
    assert done.status_code == 200 and "Check your inbox" in done.get_data(as_text=True)

    assert browser.get(old_preferences).status_code == 404
    renewed = mails_to(settings, READER)[-1]
    assert "new" in str(renewed["Subject"]).lower()
    new_preferences = path_of(link_in(renewed, "/preferences/"))
    assert new_preferences != old_preferences
    assert browser.get(new_preferences).status_code == 200
    # The unsubscribe link of the old mail still lets the reader leave (RFC 8058), nothing else.
    page = browser.get(old_unsubscribe)
    assert page.status_code == 200 and "can only unsubscribe you" in page.get_data(as_text=True)
    assert browser.post(old_unsubscribe, data={"action": "weekly"}).status_code == 404
    left = browser.post(old_unsubscribe, data={"List-Unsubscribe": "One-Click"})
    assert left.status_code == 200
    db.expire_all()
    assert db.get(Subscriber, subscriber.id).status == SubscriberStatus.UNSUBSCRIBED  # type: ignore[union-attr]


def test_after_leaving_everything_lists_come_back_only_through_a_confirmation(
    browser: FlaskClient, settings: Settings, db: Session, lists: Lists
) -> None:
    subscriber = signed_up(browser, settings, db, lists)
    welcome = mails_to(settings, READER)[-1]
    preferences = path_of(link_in(welcome, "/preferences/"))
    unsubscribe = path_of(link_in(welcome, "/unsubscribe/"))
    left = browser.post(unsubscribe, data={"action": "all"})
    assert left.status_code == 200
    sent_before = len(mails_to(settings, READER))

    page = browser.get(preferences).get_data(as_text=True)
    assert "we will send you a mail to confirm first" in page
    form = {
        "csrf_token": csrf_token(browser, preferences),
        "name": "Crawl",
        "timezone": "UTC",
        "newsletter": [str(lists.daily.id), str(lists.weekly.id)],
    }
    saved = browser.post(preferences, data=form)
    assert saved.status_code == 303 and saved.headers["Location"].endswith("done=confirm")
    assert "open the mail we just sent" in browser.get(saved.headers["Location"]).text
    subs = subs_of(db, subscriber.id)
    assert SubscriptionStatus.ACTIVE not in {s.status for s in subs.values()}
    db.expire_all()
    assert db.get(Subscriber, subscriber.id).status == SubscriberStatus.UNSUBSCRIBED  # type: ignore[union-attr]

    mails = mails_to(settings, READER)
    assert len(mails) == sent_before + 1
    confirm = path_of(link_in(mails[-1], "/confirm/"))
    assert browser.get(confirm).status_code == 200  # the page alone changes nothing
    assert SubscriptionStatus.ACTIVE not in {s.status for s in subs_of(db, subscriber.id).values()}
    assert browser.post(confirm).status_code == 200
    subs = subs_of(db, subscriber.id)
    assert subs[lists.daily.id].status == SubscriptionStatus.ACTIVE
    assert subs[lists.weekly.id].status == SubscriptionStatus.ACTIVE


def test_undo_is_only_on_the_page_that_just_unsubscribed(
    browser: FlaskClient, settings: Settings, db: Session, lists: Lists
) -> None:
    subscriber = signed_up(browser, settings, db, lists)
    unsubscribe = path_of(link_in(mails_to(settings, READER)[-1], "/unsubscribe/"))
    left = browser.post(unsubscribe, data={"action": "all"}).get_data(as_text=True)
    match = re.search(r'name="undo" value="([^"]+)"', left)
    assert match
    # Resubscribing straight from the link, without the page's token, is refused.
    for data in ({"action": "undo"}, {"action": "undo", "undo": match.group(1)[:-2] + "xx"}):
        assert browser.post(unsubscribe, data=data).status_code == 400
    db.expire_all()
    assert db.get(Subscriber, subscriber.id).status == SubscriberStatus.UNSUBSCRIBED  # type: ignore[union-attr]
    back = browser.post(unsubscribe, data={"action": "undo", "undo": match.group(1)})
    assert back.status_code == 200 and "Welcome back" in back.get_data(as_text=True)
    db.expire_all()
    assert db.get(Subscriber, subscriber.id).status == SubscriberStatus.ACTIVE  # type: ignore[union-attr]


def test_revisiting_an_unsubscribe_link_after_leaving_offers_to_subscribe_again(
    browser: FlaskClient, settings: Settings, db: Session, lists: Lists
) -> None:
    subscriber = signed_up(browser, settings, db, lists, lists.offers.id)
    leave_all = path_of(
        next(u for u in urls_of(mails_to(settings, READER)[-1]) if "/unsubscribe/" in u)
    )
    # The welcome mail's link leaves every list; a digest's leaves its own. Use a list link.
    raw = digest_for(browser.application, db, settings, lists, subscriber)
    digest = message_from_bytes(raw, policy=policy.default)
    assert isinstance(digest, EmailMessage)
    one_list = path_of(link_in(digest, "/unsubscribe/"))
    assert one_list != leave_all
    browser.post(one_list, data={"action": "unsubscribe"})

    page = browser.get(one_list).get_data(as_text=True)
    assert "You are not receiving" in page and "Morning Briefing" in page
    assert 'value="unsubscribe"' not in page and "Subscribe again to Morning Briefing" in page
    assert "mail to confirm" not in page  # still on Offers: the link proves the mailbox
    back = browser.post(one_list, data={"action": "rejoin"})
    assert back.status_code == 200 and "Welcome back" in back.get_data(as_text=True)
    assert subs_of(db, subscriber.id)[lists.daily.id].status == SubscriptionStatus.ACTIVE

    browser.post(leave_all, data={"action": "all"})
    sent = len(mails_to(settings, READER))
    page = browser.get(leave_all).get_data(as_text=True)
    assert "any of our newsletters" in page and "mail to confirm first" in page
    asked = browser.post(leave_all, data={"action": "rejoin"})
    assert asked.status_code == 200 and "Check your inbox" in asked.get_data(as_text=True)
    assert SubscriptionStatus.ACTIVE not in {s.status for s in subs_of(db, subscriber.id).values()}
    mails = mails_to(settings, READER)
    assert len(mails) == sent + 1
    assert browser.post(path_of(link_in(mails[-1], "/confirm/"))).status_code == 200
    subs = subs_of(db, subscriber.id)
    assert {subs[lists.daily.id].status, subs[lists.offers.id].status} == {
        SubscriptionStatus.ACTIVE
    }
