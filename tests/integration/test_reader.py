"""A reader's whole journey through the real parts: gunicorn (`newsletter web`), a Celery worker
process (`newsletter worker`) on Redis, PostgreSQL migrated by `newsletter db upgrade`, and mail
delivered over SMTP to aiosmtpd. Subscribe → confirmation mail → confirm (GET changes nothing,
POST confirms) → welcome mail → RFC 8058 one-click unsubscribe (GET changes nothing). The signup
request only enqueues the signup; the worker records it and sends the confirmation."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from newsletter.store.db import dispose_engines, session_scope
from newsletter.store.models import Subscriber, SubscriberStatus, Subscription, SubscriptionStatus
from tests.support.services import fresh_postgres_database
from tests.support.smtp import SMTPSink, free_port
from tests.support.worker import (
    WebProcess,
    WorkerProcess,
    redis_test_db,
    require_postgres,
    run_newsletter,
    service_env,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

READER = "ada.lovelace@example.com"


@dataclass
class Stack:
    """The running parts of one test."""

    web: WebProcess
    worker: WorkerProcess
    sink: SMTPSink
    database_url: str

    def statuses(self) -> tuple[SubscriberStatus, dict[str, SubscriptionStatus]]:
        """The reader's overall status and per-list statuses, read from PostgreSQL."""
        with session_scope(self.database_url) as db:
            reader = db.scalars(select(Subscriber).where(Subscriber.email == READER)).one()
            per_list = {
                s.newsletter.slug: s.status
                for s in db.scalars(
                    select(Subscription).where(Subscription.subscriber_id == reader.id)
                )
            }
            status = reader.status
        dispose_engines()
        return status, per_list

    def mail(self, count: int) -> EmailMessage:
        """Wait for the ``count``-th mail to the reader and return it (with the logs on failure)."""
        try:
            self.sink.wait_for(count, timeout=60)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.worker.describe()}") from None
        received = self.sink.to(READER)
        assert len(received) >= count
        return received[count - 1].message


@pytest.fixture
def stack(tmp_path: Path, smtp_sink: SMTPSink) -> Iterator[Stack]:
    """web + worker on Redis and a fresh PostgreSQL database with two newsletters."""
    require_postgres()
    with redis_test_db() as broker_url, fresh_postgres_database() as database_url:
        port = free_port()
        env = service_env(
            tmp_path,
            database_url=database_url,
            broker_url=broker_url,
            smtp_url=smtp_sink.url,
            base_url=f"http://127.0.0.1:{port}",
        )
        migrated = run_newsletter(["db", "upgrade"], env)
        assert "is at revision" in migrated.stdout
        run_newsletter(["newsletters", "create", "daily", "--name", "Daily digest"], env)
        run_newsletter(
            ["newsletters", "create", "offers", "--name", "Offers", "--kind", "campaign"], env
        )
        web = WebProcess(env, tmp_path / "web.log", port=port).launch()
        worker = WorkerProcess(env, tmp_path / "worker.log").launch()
        with web, worker:  # both boot at once; leaving the block stops both
            web.wait_ready()
            worker.wait_ready()
            yield Stack(web, worker, smtp_sink, database_url)


def text_of(message: EmailMessage) -> str:
    """The plain-text part."""
    part = message.get_body(preferencelist=("plain",))
    assert isinstance(part, EmailMessage)
    content = part.get_content()
    assert isinstance(content, str)
    return content


def test_subscribe_confirm_welcome_and_one_click_unsubscribe(stack: Stack) -> None:
    base = stack.web.url
    page = requests.get(f"{base}/", timeout=10)
    assert page.status_code == 200
    assert "Stay in touch" in page.text

    # The embed endpoint the news site's own forms post to (no CSRF token, no cookies).
    answer = requests.post(
        f"{base}/subscribe",
        data={
            "email": READER,
            "name": "Ada",
            "newsletter": ["daily", "offers"],
            "website": "",
            "source": "integration-test",
        },
        timeout=10,
        allow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    assert answer.headers["Location"] == "/check-inbox"

    # The worker records the signup (the request only enqueued it), then mails the link.
    confirmation = stack.mail(1)
    assert stack.statuses() == (
        SubscriberStatus.PENDING,
        {"daily": SubscriptionStatus.PENDING, "offers": SubscriptionStatus.PENDING},
    )
    assert confirmation["To"].addresses[0].addr_spec == READER
    links = re.findall(rf"{re.escape(base)}/confirm/\S+", text_of(confirmation))
    assert links, text_of(confirmation)
    confirm_url = links[0]

    # A mail scanner fetching the link confirms nothing.
    shown = requests.get(confirm_url, timeout=10)
    assert shown.status_code == 200
    assert "<form" in shown.text
    assert stack.statuses()[0] == SubscriberStatus.PENDING

    confirmed = requests.post(confirm_url, timeout=10)
    assert confirmed.status_code == 200
    assert stack.statuses() == (
        SubscriberStatus.ACTIVE,
        {"daily": SubscriptionStatus.ACTIVE, "offers": SubscriptionStatus.ACTIVE},
    )

    welcome = stack.mail(2)
    assert welcome["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    targets = re.findall(r"<([^>]+)>", welcome["List-Unsubscribe"])
    https = [t for t in targets if t.startswith(f"{base}/unsubscribe/")]
    assert https, welcome["List-Unsubscribe"]
    assert any(t.startswith("mailto:") for t in targets)
    unsubscribe_url = https[0]

    # GET shows a page and changes nothing (scanners, previews).
    page = requests.get(unsubscribe_url, timeout=10)
    assert page.status_code == 200
    assert stack.statuses()[0] == SubscriberStatus.ACTIVE

    # What Gmail does when the reader presses "Unsubscribe": a cookieless POST, RFC 8058.
    one_click = requests.post(
        unsubscribe_url, data={"List-Unsubscribe": "One-Click"}, timeout=10, allow_redirects=False
    )
    assert one_click.status_code == 200
    assert stack.statuses() == (
        SubscriberStatus.UNSUBSCRIBED,
        {"daily": SubscriptionStatus.UNSUBSCRIBED, "offers": SubscriptionStatus.UNSUBSCRIBED},
    )
    assert len(stack.sink.to(READER)) == 2  # no "sorry to see you go" mail on one-click


def test_a_task_enqueued_while_the_worker_is_down_is_delivered_after_restart(
    stack: Stack,
) -> None:
    stack.worker.kill()
    answer = requests.post(
        f"{stack.web.url}/subscribe",
        data={"email": READER, "newsletter": ["daily"]},
        timeout=10,
    )
    assert answer.status_code == 200
    assert stack.sink.messages == []  # nobody consumes the queue

    stack.worker.start()
    confirmation = stack.mail(1)
    assert "/confirm/" in text_of(confirmation)
