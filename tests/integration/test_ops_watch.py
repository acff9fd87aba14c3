"""Watching the running service: JSON logs that follow one signup from the web (gunicorn) to the
worker by its request id, the worker's task-duration metrics port, and the web's /metrics after
real traffic, both in prometheus_client's multiprocess mode (several processes, one answer)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

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

REQUEST_ID = "signup-from-the-edge.42"


@dataclass
class Stack:
    """The running parts of one test and the metrics token."""

    web: WebProcess
    worker: WorkerProcess
    worker_metrics: str
    token: str


@pytest.fixture
def stack(tmp_path: Path, smtp_sink: SMTPSink) -> Iterator[Stack]:
    """gunicorn (2 processes) and a prefork worker (2 processes), JSON logs, metrics dirs."""
    require_postgres()
    with redis_test_db() as broker_url, fresh_postgres_database() as database_url:
        port, metrics_port = free_port(), free_port()
        env = service_env(
            tmp_path,
            database_url=database_url,
            broker_url=broker_url,
            smtp_url=smtp_sink.url,
            base_url=f"http://127.0.0.1:{port}",
            log_format="json",
            worker_metrics_port=str(metrics_port),
        )
        run_newsletter(["db", "upgrade"], env)
        run_newsletter(["newsletters", "create", "daily", "--name", "Daily digest"], env)
        created = run_newsletter(["tokens", "create", "prom", "--scope", "metrics:read"], env)
        token = created.stdout.split()[0]
        web_env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom-web")}
        worker_env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom-worker")}
        web = WebProcess(web_env, tmp_path / "web.log", port=port, workers=2).launch()
        worker = WorkerProcess(worker_env, tmp_path / "worker.log", concurrency=2).launch()
        with web, worker:
            web.wait_ready()
            worker.wait_ready()
            yield Stack(web, worker, f"http://127.0.0.1:{metrics_port}/metrics", token)


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every JSON log line of a process's output (each must parse), skipping the few lines
    printed rather than logged (gunicorn's master before the app loads, Celery's banner)."""
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Prometheus text as {(sample name, sorted labels): value}."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_one_signup_is_followed_from_web_to_worker_and_counted(
    stack: Stack, smtp_sink: SMTPSink
) -> None:
    answer = requests.post(
        f"{stack.web.url}/subscribe",
        data={"email": "ada@example.com", "newsletter": ["daily"], "website": ""},
        headers={"X-Request-ID": REQUEST_ID},
        timeout=10,
        allow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    assert answer.headers["X-Request-ID"] == REQUEST_ID
    smtp_sink.wait_for(1, timeout=60)

    # The web's access line of that request, as JSON, by the id the client sent.
    stack.web.wait_for_log(r'"route": "/subscribe".*"request_id"|"request_id".*"/subscribe"')
    web_lines = json_lines(stack.web.log_text())
    access = [line for line in web_lines if line.get("route") == "/subscribe"]
    assert access and access[0]["request_id"] == REQUEST_ID
    assert access[0]["method"] == "POST" and access[0]["status"] == 303

    # The worker's lines of the tasks it enqueued carry the task's id and name, and that id.
    stack.worker.wait_for_log(r"newsletter\.send_confirmation\[[^\]]+\] succeeded")
    worker_lines = json_lines(stack.worker.log_text())
    in_tasks = [line for line in worker_lines if "task_id" in line]
    names = {line["task_name"] for line in in_tasks}
    assert {"newsletter.process_signup", "newsletter.send_confirmation"} <= names, in_tasks
    for line in in_tasks:
        if line["task_name"] in {"newsletter.process_signup", "newsletter.send_confirmation"}:
            assert line["request_id"] == REQUEST_ID, line
            assert line["task_id"] in line["message"]  # Celery's own line names it too
    # No mailed token in any log line of either process.
    confirmation = smtp_sink.messages[0].message.as_string()
    token = confirmation.split("/confirm/", 1)[1].split()[0][:40]
    assert token not in stack.web.log_text() and token not in stack.worker.log_text()

    # The worker's port: both tasks ran in pool processes, their durations are all there.
    def task_counts() -> dict[str, float]:
        found = samples(requests.get(stack.worker_metrics, timeout=5).text)
        return {
            dict(labels)["task"]: value
            for (name, labels), value in found.items()
            if name == "newsletter_task_duration_seconds_count"
            and dict(labels)["state"] == "success"
        }

    stack.worker.wait_until(
        lambda: task_counts().get("newsletter.send_confirmation") == 1, 30, "to count the task"
    )
    assert task_counts()["newsletter.process_signup"] == 1

    # The web: both gunicorn processes' requests in one histogram, and the database gauges.
    for _ in range(6):
        assert requests.get(f"{stack.web.url}/readyz", timeout=10).status_code == 200
    scrape = requests.get(
        f"{stack.web.url}/metrics", headers={"Authorization": f"Bearer {stack.token}"}, timeout=10
    )
    assert scrape.status_code == 200
    found = samples(scrape.text)
    readyz = (
        "newsletter_http_request_duration_seconds_count",
        (("method", "GET"), ("route", "/readyz"), ("status", "2xx")),
    )
    assert found[readyz] == 6
    subscribe = (("method", "POST"), ("route", "/subscribe"), ("status", "3xx"))
    assert found[("newsletter_http_request_duration_seconds_count", subscribe)] == 1
    assert found[("newsletter_signups_last_hour", ())] == 1
    assert found[("newsletter_broker_up", ())] == 1
    assert ("newsletter_queue_messages", (("queue", "transactional"),)) in found
