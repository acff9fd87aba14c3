"""The public web version of an issue and the editor's preview page."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import timedelta
from html import unescape

import pytest
from flask import Flask
from flask.testing import FlaskClient
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from playwright.sync_api import Browser
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsletter.content.selection import Reader, plan_digest
from newsletter.issues.links import (
    PREVIEW_SALT,
    archive_token,
    archive_url,
    preview_token,
    preview_url,
)
from newsletter.issues.rendering import NothingToPreview, clear_cache, prepare_issue, preview
from newsletter.settings import Settings
from newsletter.store.db import utcnow
from newsletter.store.models import Issue, IssueStatus, Newsletter, NewsletterKind, Post
from tests.support.live_app import live_app


def path_of(url: str) -> str:
    """The path of one of our absolute URLs, for the test client."""
    return "/" + url.split("/", 3)[3]


@pytest.fixture
def daily(db: Session) -> Newsletter:
    """A digest newsletter with two fresh posts."""
    newsletter = Newsletter(slug="daily", name="Morning Briefing")
    db.add(newsletter)
    now = utcnow()
    db.add_all(
        [
            Post(
                guid="a",
                link="https://news.example.com/a",
                title="Bridge reopens after repairs",
                summary="Traffic flows again.",
                image_url="https://img.example.com/bridge.jpg",
                categories=["Local"],
                published_at=now - timedelta(hours=1),
            ),
            Post(
                guid="b",
                link="https://news.example.com/b",
                title="Café culture returns",
                summary="Terraces are full.",
                categories=["Life"],
                published_at=now - timedelta(hours=2),
            ),
        ]
    )
    db.commit()
    return newsletter


def sent_issue(
    db: Session, settings: Settings, newsletter: Newsletter, status: IssueStatus
) -> Issue:
    """A planned digest issue in ``status``."""
    issue = Issue(newsletter_id=newsletter.id, kind=NewsletterKind.DIGEST)
    db.add(issue)
    db.flush()
    assert plan_digest(db, settings, issue, utcnow())
    issue.status = status
    db.commit()
    return issue


def test_view_in_browser_link_of_a_mail_opens_the_web_version(
    app: Flask, client: FlaskClient, db: Session, settings: Settings, daily: Newsletter
) -> None:
    issue = sent_issue(db, settings, daily, IssueStatus.SENT)
    clear_cache()
    with app.app_context():
        prepared = prepare_issue(db, settings, issue.id)
    mail = prepared.message_for(
        Reader(5, "ana@example.com", "Ana", 0, "UTC", (), None, frozenset())
    )
    assert mail is not None
    link = re.search(rb"View this mail in your browser:\r\n(\S+)", mail.message)
    assert link is not None
    assert link.group(1).decode() == archive_url(settings, issue.id)

    response = client.get(path_of(archive_url(settings, issue.id)))

    assert response.status_code == 200
    page = unescape(response.get_data(as_text=True))  # the mail sits in the frame's srcdoc
    # The site's own masthead and footer around the mail, and a way to subscribe.
    assert 'class="masthead__brand"' in page and 'class="site-footer"' in page
    assert 'href="/?newsletter=daily">Subscribe to Morning Briefing</a>' in page
    assert "Bridge reopens after repairs" in page and "Café culture returns" in page
    assert 'alt="Bridge reopens after repairs"' in page
    # A generic reader: no greeting by name, no personal links, a way to subscribe instead.
    assert "Ana" not in page
    assert "/unsubscribe/" not in page and "/preferences/" not in page
    assert "Unsubscribe" not in page
    assert 'href="http://127.0.0.1:5000/"' in page and "Subscribe to Morning Briefing" in page
    assert "View this mail in your browser" not in page
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Robots-Tag"] == "noindex"


@pytest.mark.parametrize("status", [IssueStatus.SENDING, IssueStatus.PAUSED])
def test_web_version_works_while_the_issue_is_going_out(
    client: FlaskClient, db: Session, settings: Settings, daily: Newsletter, status: IssueStatus
) -> None:
    issue = sent_issue(db, settings, daily, status)
    assert client.get(path_of(archive_url(settings, issue.id))).status_code == 200


@pytest.mark.parametrize(
    "status", [IssueStatus.DRAFT, IssueStatus.SCHEDULED, IssueStatus.CANCELLED]
)
def test_unsent_issues_are_not_public(
    client: FlaskClient, db: Session, settings: Settings, daily: Newsletter, status: IssueStatus
) -> None:
    issue = sent_issue(db, settings, daily, status)
    response = client.get(path_of(archive_url(settings, issue.id)))
    assert response.status_code == 404
    assert "Bridge reopens" not in response.get_data(as_text=True)


def test_forged_or_unknown_archive_tokens_are_404(
    client: FlaskClient, db: Session, settings: Settings, daily: Newsletter
) -> None:
    issue = sent_issue(db, settings, daily, IssueStatus.SENT)
    token = archive_token(settings, issue.id)
    other_secret = Settings(secret_key="another-secret-key-that-is-long-enough-000")
    for bad in (
        token[:-2] + ("AA" if not token.endswith("AA") else "BB"),
        str(issue.id),
        archive_token(settings, issue.id + 1000),  # genuine signature, no such issue
        archive_token(other_secret, issue.id),
        preview_token(settings, "daily", None),  # a token for something else
    ):
        assert client.get(f"/archive/{bad}").status_code == 404, bad


def test_archive_and_preview_are_get_only(
    client: FlaskClient, db: Session, settings: Settings, daily: Newsletter
) -> None:
    issue = sent_issue(db, settings, daily, IssueStatus.SENT)
    assert client.post(path_of(archive_url(settings, issue.id))).status_code == 405
    assert client.post(path_of(preview_url(settings, "daily"))).status_code == 405


def test_preview_page_shows_subject_html_and_text_and_stores_nothing(
    client: FlaskClient, db: Session, settings: Settings, daily: Newsletter
) -> None:
    url = preview_url(settings, "daily", "daily")
    issues_before = db.scalar(select(func.count()).select_from(Issue))

    response = client.get(path_of(url))

    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "Bridge reopens after repairs, plus 1 more story" in page  # the subject
    frame = re.search(r'<iframe [^>]*srcdoc="([^"]*)"[^>]*sandbox="[^"]*"', page)
    assert frame is not None and "Café culture returns" in frame.group(1)
    assert "&lt;!DOCTYPE html&gt;" in frame.group(1)  # escaped into the attribute
    assert response.headers["Cache-Control"] == "no-store"
    assert "script-src 'none'" in response.headers["Content-Security-Policy"]

    text = client.get(path_of(url) + "?view=text").get_data(as_text=True)
    assert "<iframe" not in text
    lead = "Bridge reopens after repairs"
    assert f"{lead}\n{'=' * len(lead)}" in text and "https://news.example.com/a" in text

    assert db.scalar(select(func.count()).select_from(Issue)) == issues_before


def test_preview_says_so_when_nothing_is_new(
    client: FlaskClient, db: Session, settings: Settings, daily: Newsletter
) -> None:
    sent_issue(db, settings, daily, IssueStatus.SENT)  # took both posts
    response = client.get(path_of(preview_url(settings, "daily")))
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "Nothing to send" in page and "No new posts for Morning Briefing" in page


def test_expired_preview_link_is_410_and_forged_is_404(
    client: FlaskClient, settings: Settings, daily: Newsletter
) -> None:
    class TwoHoursAgo(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - 7200

    old = URLSafeTimedSerializer(settings.secret_key, salt=PREVIEW_SALT, signer=TwoHoursAgo)
    expired = client.get("/preview/" + old.dumps(["daily", None]))
    assert expired.status_code == 410
    assert "newsletter digest preview" in expired.get_data(as_text=True)

    assert client.get("/preview/not-a-token").status_code == 404
    assert client.get("/preview/" + archive_token(settings, 1)).status_code == 404
    assert client.get(path_of(preview_url(settings, "no-such-list"))).status_code == 404
    assert client.get(path_of(preview_url(settings, "daily", "hourly"))).status_code == 404


def test_preview_function_for_the_cli(
    app: Flask, db: Session, settings: Settings, daily: Newsletter
) -> None:
    with app.app_context():
        subject, html, text = preview(db, settings, "daily", "weekly")
        assert subject == "Bridge reopens after repairs, plus 1 more story"
        assert "<title>Bridge reopens after repairs, plus 1 more story</title>" in html
        assert "(weekly edition)" in text
        with pytest.raises(LookupError, match="no newsletter 'nope'"):
            preview(db, settings, "nope")
        with pytest.raises(ValueError, match="choose one of: daily, weekly"):
            preview(db, settings, "daily", "hourly")

        offers = Newsletter(slug="offers", name="Offers", kind=NewsletterKind.CAMPAIGN)
        db.add(offers)
        db.commit()
        with pytest.raises(NothingToPreview, match="no draft"):
            preview(db, settings, "offers")
        db.add(
            Issue(
                newsletter_id=offers.id,
                kind=NewsletterKind.CAMPAIGN,
                subject="Summer sale",
                body_html="<p>Half price.</p>",
            )
        )
        db.commit()
        subject, html, text = preview(db, settings, "offers")
        assert subject == "Summer sale"
        assert "Half price." in text and "<p" in html


@pytest.fixture
def live_server(settings: Settings) -> Iterator[str]:
    """The app served over real HTTP on a free loopback port."""
    with live_app(settings) as (_, url):
        yield url


@pytest.mark.browser
def test_preview_page_renders_the_mail_in_chromium(
    chromium: Browser, live_server: str, db: Session, settings: Settings, daily: Newsletter
) -> None:
    issue = sent_issue(db, settings, daily, IssueStatus.SENT)
    db.add(
        Post(
            guid="c",
            link="https://news.example.com/c",
            title="Library extends opening hours",
            published_at=utcnow(),
        )
    )
    db.commit()

    page = chromium.new_page()  # its own context, closed with the page
    try:
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(live_server + path_of(preview_url(settings, "daily")))
        assert page.locator("h1.preview__subject").inner_text() == "Library extends opening hours"
        frame = page.frame_locator("iframe.preview__frame")
        heading = frame.locator("h2 a")
        assert heading.first.inner_text() == "Library extends opening hours"
        assert page.locator("iframe.preview__frame").bounding_box()["height"] > 300
        page.get_by_role("link", name="Plain text").click()
        lead = "Library extends opening hours"  # the lead story, underlined in plain text
        assert f"{lead}\n{'=' * len(lead)}" in page.locator("pre").inner_text()

        page.goto(live_server + path_of(archive_url(settings, issue.id)))
        mail = page.frame_locator("iframe.archive__frame")
        images = mail.locator("img")
        assert images.first.get_attribute("alt") == "Bridge reopens after repairs"
        assert page.locator("a.masthead__brand").inner_text() == settings.site_name
        # archive.js grew the frame to the whole mail: the page scrolls as one.
        frame = page.locator("iframe.archive__frame")
        page.wait_for_function(
            "() => { const f = document.querySelector('iframe.archive__frame');"
            " return f.offsetHeight >= f.contentDocument.documentElement.scrollHeight - 1; }"
        )
        width = mail.locator("table.container").evaluate("t => t.offsetWidth")
        assert width <= 600 and frame.bounding_box()["height"] > 400
        assert not [e for e in errors if "Content Security Policy" in e]
    finally:
        page.close()


def test_web_version_of_a_campaign(client: FlaskClient, db: Session, settings: Settings) -> None:
    offers = Newsletter(slug="offers", name="Offers", kind=NewsletterKind.CAMPAIGN)
    db.add(offers)
    db.flush()
    campaign = Issue(
        newsletter_id=offers.id,
        kind=NewsletterKind.CAMPAIGN,
        status=IssueStatus.SENT,
        subject="Summer sale",
        body_html=(
            '<p>Half price until <strong>Sunday</strong>.</p><img src="x" onerror="alert(1)">'
        ),
    )
    db.add(campaign)
    db.commit()

    response = client.get(path_of(archive_url(settings, campaign.id)))

    assert response.status_code == 200
    page = unescape(response.get_data(as_text=True))
    assert "<title>Summer sale</title>" in page
    assert re.search(r"Half price until <strong[^>]*>Sunday</strong>\.", page)
    assert "onerror" not in page
    assert "/unsubscribe/" not in page and "Subscribe to Offers" in page
