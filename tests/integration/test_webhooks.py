"""Outbound webhooks through the real parts: gunicorn (`newsletter web`), a Celery worker on
Redis, PostgreSQL, mail over SMTP to aiosmtpd, and a receiver written from the Standard Webhooks
spec on 127.0.0.1 (so the stack runs with NEWSLETTER_WEBHOOK_ALLOW_PRIVATE_NETWORKS=true). A
reader who subscribes and confirms through the reader pages produces signed, verified
``subscriber.created`` and ``subscriber.confirmed`` webhooks; a receiver answering 500 gets
retries, and the API shows each attempt and its answer."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import pytest
import requests

from tests.support.services import fresh_postgres_database
from tests.support.smtp import SMTPSink, free_port
from tests.support.webhook_receiver import Received, WebhookReceiver
from tests.support.worker import (
    WebProcess,
    WorkerProcess,
    redis_test_db,
    require_postgres,
    run_newsletter,
    service_env,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

READER = "grace.hopper@example.com"


@dataclass
class Stack:
    """The running parts of one test."""

    web: WebProcess
    worker: WorkerProcess
    sink: SMTPSink
    receiver: WebhookReceiver
    env: dict[str, str]

    def webhooks(self, count: int) -> list[Received]:
        """The first ``count`` requests the receiver got (with the worker's log on failure)."""
        try:
            return self.receiver.wait_for(count, timeout=60)[:count]
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.worker.describe()}") from None

    def mail(self, count: int) -> EmailMessage:
        """The ``count``-th mail to the reader."""
        try:
            self.sink.wait_for(count, timeout=60)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.worker.describe()}") from None
        return self.sink.to(READER)[count - 1].message

    def subscribe(self) -> None:
        """Sign the reader up through the form the news site's pages post to."""
        answer = requests.post(
            f"{self.web.url}/subscribe",
            data={"email": READER, "newsletter": ["daily"], "website": ""},
            timeout=10,
            allow_redirects=False,
        )
        assert answer.status_code == 303, answer.text


@pytest.fixture
def stack(tmp_path: Path, smtp_sink: SMTPSink) -> Iterator[Stack]:
    """web + worker on Redis and PostgreSQL, one list, and an endpoint at the receiver."""
    require_postgres()
    receiver = WebhookReceiver().start()
    with redis_test_db() as broker_url, fresh_postgres_database() as database_url:
        port = free_port()
        env = service_env(
            tmp_path,
            database_url=database_url,
            broker_url=broker_url,
            smtp_url=smtp_sink.url,
            base_url=f"http://127.0.0.1:{port}",
            webhook_allow_private_networks="true",
            webhook_retry_base_seconds="1",  # retries after 1 s, then 4 s
            webhook_timeout_seconds="5",
        )
        run_newsletter(["db", "upgrade"], env)
        run_newsletter(["newsletters", "create", "daily", "--name", "Daily digest"], env)
        added = run_newsletter(["webhooks", "add", receiver.url, "--description", "CRM"], env)
        receiver.secret = added.stdout.strip()
        web = WebProcess(env, tmp_path / "web.log", port=port).launch()
        worker = WorkerProcess(env, tmp_path / "worker.log").launch()
        try:
            with web, worker:
                web.wait_ready()
                worker.wait_ready()
                yield Stack(web, worker, smtp_sink, receiver, env)
        finally:
            receiver.stop()


def test_confirming_through_the_reader_pages_sends_a_verified_subscriber_confirmed(
    stack: Stack,
) -> None:
    stack.subscribe()
    (created,) = stack.webhooks(1)
    assert created.verified, created.problem
    assert created.event["type"] == "subscriber.created"
    assert created.event["data"]["email"] == READER
    assert created.event["data"]["status"] == "pending"

    text = stack.mail(1).get_body(preferencelist=("plain",))
    assert text is not None
    (confirm_url,) = set(re.findall(rf"{re.escape(stack.web.url)}/confirm/\S+", text.get_content()))
    assert requests.get(confirm_url, timeout=10).status_code == 200  # a scanner: nothing sent
    assert requests.post(confirm_url, timeout=10).status_code == 200

    confirmed = stack.webhooks(2)[1]
    assert confirmed.verified, confirmed.problem
    assert confirmed.event["type"] == "subscriber.confirmed"
    assert confirmed.event["data"] == {
        "subscriber_id": created.event["data"]["subscriber_id"],
        "email": READER,
        "status": "active",
        "newsletters": ["daily"],
    }
    assert confirmed.headers["webhook-id"] != created.headers["webhook-id"]
    assert len(stack.receiver.received) == 2


def test_a_receiver_answering_500_gets_retries_and_the_api_shows_each_answer(
    stack: Stack,
) -> None:
    stack.receiver.fail_next = 2
    stack.subscribe()
    attempts = stack.webhooks(3)
    assert [a.status for a in attempts] == [500, 500, 200]
    assert all(a.verified for a in attempts)
    assert len({a.headers["webhook-id"] for a in attempts}) == 1  # one message, retried
    assert {a.event["type"] for a in attempts} == {"subscriber.created"}

    token = run_newsletter(
        ["tokens", "create", "crm-admin", "--scope", "webhooks:read"], stack.env
    ).stdout.strip()
    # The worker records the answer just after the receiver sent it: wait for the record.
    deadline = time.monotonic() + 30
    while True:
        listed = requests.get(
            f"{stack.web.url}/api/v1/webhooks/1/deliveries",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert listed.status_code == 200, listed.text
        (delivery,) = listed.json()["items"]
        if delivery["status"] != "pending" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert (delivery["status"], delivery["attempts"]) == ("delivered", 3)
    assert [a["status_code"] for a in delivery["attempt_log"]] == [500, 500, 200]
    assert delivery["attempt_log"][0]["response_body"] == "receiver trouble"
