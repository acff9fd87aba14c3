"""Real Chromium (Debian's /usr/bin/chromium through Playwright) on the real running service.

1. The production stack (gunicorn, a Celery worker on Redis, PostgreSQL, SMTP to aiosmtpd):
   subscribe on the page, open the confirmation link (a scanner running the page's scripts
   confirms nothing), press its button, then press the unsubscribe button reached from the
   welcome mail.
2. `newsletter dev` on embedded defaults: subscribe, find the mail in the dev mail viewer, follow
   its link out of the sandboxed frame into a new tab, and press its button.
"""

from __future__ import annotations

import re
from email.message import EmailMessage
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import select

from newsletter.store.db import dispose_engines, session_scope
from newsletter.store.models import Subscriber, SubscriberStatus
from tests.support.services import fresh_postgres_database
from tests.support.smtp import SMTPSink, free_port
from tests.support.worker import (
    DevProcess,
    WebProcess,
    WorkerProcess,
    base_env,
    redis_test_db,
    require_postgres,
    run_newsletter,
    service_env,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def reader_status(database_url: str, email: str) -> SubscriberStatus:
    """The reader's status in the database."""
    with session_scope(database_url) as db:
        status = db.scalars(select(Subscriber.status).where(Subscriber.email == email)).one()
    dispose_engines()
    return status


def link_in(message: EmailMessage, pattern: str) -> str:
    """The first URL in the text part matching ``pattern``."""
    part = message.get_body(preferencelist=("plain",))
    assert isinstance(part, EmailMessage)
    text = part.get_content()
    found = re.search(pattern, text)
    assert found, text
    return found.group(0)


def subscribe(page: Page, base: str, email: str) -> None:
    """Fill and send the signup form like a reader."""
    page.goto(f"{base}/")
    expect(page.get_by_role("heading", name="Stay in touch")).to_be_visible()
    page.get_by_label("Email address").fill(email)
    boxes = page.locator("input[name=newsletter][type=checkbox]")
    if boxes.count():
        boxes.first.check()
    page.get_by_role("button", name="Subscribe").click()
    expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()


def test_subscribe_confirm_and_unsubscribe_in_chromium(
    page: Page, tmp_path: Path, smtp_sink: SMTPSink
) -> None:
    require_postgres()
    email = "grace.hopper@example.com"
    with redis_test_db() as broker_url, fresh_postgres_database() as database_url:
        port = free_port()
        env = service_env(
            tmp_path,
            database_url=database_url,
            broker_url=broker_url,
            smtp_url=smtp_sink.url,
            base_url=f"http://127.0.0.1:{port}",
        )
        run_newsletter(["db", "upgrade"], env)
        run_newsletter(["newsletters", "create", "daily", "--name", "Daily digest"], env)
        run_newsletter(
            ["newsletters", "create", "offers", "--name", "Offers", "--kind", "campaign"], env
        )
        web = WebProcess(env, tmp_path / "web.log", port=port).launch()
        worker = WorkerProcess(env, tmp_path / "worker.log").launch()
        with web, worker:
            web.wait_ready()
            worker.wait_ready()

            page.goto(f"{web.url}/")
            page.screenshot(path="/tmp/signup.png", full_page=True)  # for people to look at
            subscribe(page, web.url, email)
            smtp_sink.wait_for(1, timeout=60)  # the worker records the signup, then mails
            assert reader_status(database_url, email) == SubscriberStatus.PENDING
            confirm = link_in(smtp_sink.to(email)[0].message, rf"{web.url}/confirm/\S+")
            page.goto(confirm)
            # Like a mail scanner that runs JavaScript: the loaded page confirms nothing.
            page.wait_for_load_state("networkidle")
            assert reader_status(database_url, email) == SubscriberStatus.PENDING
            page.get_by_role("button", name="Yes, confirm my subscription").click()
            expect(page.get_by_role("heading", name="You're subscribed")).to_be_visible()
            assert reader_status(database_url, email) == SubscriberStatus.ACTIVE

            smtp_sink.wait_for(2, timeout=60)
            welcome = smtp_sink.to(email)[1].message
            unsubscribe = link_in(welcome, rf"{web.url}/unsubscribe/\S+")
            page.goto(unsubscribe)
            assert reader_status(database_url, email) == SubscriberStatus.ACTIVE  # GET: no change
            page.get_by_role("button", name=re.compile(r"^Unsubscribe from")).first.click()
            expect(page.locator("main")).to_contain_text(re.compile("unsubscribed", re.I))
            assert reader_status(database_url, email) == SubscriberStatus.UNSUBSCRIBED


def test_dev_mode_mail_viewer_link_confirms_in_a_new_tab(page: Page, tmp_path: Path) -> None:
    email = "katherine.johnson@example.com"
    data = tmp_path / "data"
    with DevProcess(base_env(NEWSLETTER_DATA_DIR=str(data)), tmp_path / "dev.log") as dev:
        subscribe(page, dev.url, email)

        page.goto(f"{dev.url}/dev/mail/")
        # The list reloads itself when the worker has captured the mail.
        mail = page.get_by_role("link", name=re.compile("confirm", re.I)).first
        expect(mail).to_be_visible(timeout=60_000)
        expect(page.get_by_role("cell", name=email)).to_be_visible()
        mail.click()

        frame = page.frame_locator("iframe.mail")
        confirm_link = frame.locator("a[href*='/confirm/']").first
        expect(confirm_link).to_be_visible()
        with page.context.expect_page() as new_tab:
            confirm_link.click()
        tab = new_tab.value
        tab.wait_for_load_state("networkidle")
        database_url = f"sqlite:///{data / 'newsletter.db'}"
        assert reader_status(database_url, email) == SubscriberStatus.PENDING
        tab.get_by_role("button", name="Yes, confirm my subscription").click()
        expect(tab.get_by_role("heading", name="You're subscribed")).to_be_visible()
        assert reader_status(database_url, email) == SubscriberStatus.ACTIVE
