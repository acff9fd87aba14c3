"""Every request has an id: a sane X-Request-ID is kept, anything else replaced; it is echoed and
carried by the JSON log lines of the request and of the tasks it runs, which name no token."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from newsletter import create_app
from newsletter.ops.logging import HANDLER_MARK
from newsletter.settings import Settings
from newsletter.store.db import dispose_engines
from tests.support.readers import make_lists

GENERATED = re.compile(r"[0-9a-f]{32}")


@dataclass
class JsonApp:
    """An app logging JSON lines and what its log handler wrote."""

    app: Flask
    stream: io.StringIO

    def lines(self) -> list[dict[str, Any]]:
        """The JSON lines written since the last call (every line must parse)."""
        text = self.stream.getvalue()
        self.stream.seek(0)
        self.stream.truncate()
        return [json.loads(line) for line in text.splitlines() if line.strip()]


@pytest.fixture
def json_app(settings: Settings) -> Iterator[JsonApp]:
    """An app logging JSON lines (as in production); its handler writes to a buffer instead of
    stderr, and logging is restored afterwards."""
    root = logging.getLogger()
    level = root.level
    app = create_app(replace(settings, log_format="json"))
    (handler,) = [h for h in root.handlers if getattr(h, HANDLER_MARK, False)]
    assert isinstance(handler, logging.StreamHandler)
    stream = io.StringIO()
    handler.setStream(stream)
    yield JsonApp(app, stream)
    dispose_engines()
    for handler in [h for h in root.handlers if getattr(h, HANDLER_MARK, False)]:
        root.removeHandler(handler)
    root.setLevel(level)


@pytest.mark.parametrize(
    "presented",
    ["abc-123", "Edge.Proxy_42", "x" * 128, "0f132f9a-56e6-4686-9cea-16220b6ca94c"],
)
def test_a_sane_request_id_is_kept_and_echoed(client: FlaskClient, presented: str) -> None:
    response = client.get("/healthz", headers={"X-Request-ID": presented})
    assert response.headers["X-Request-ID"] == presented


@pytest.mark.parametrize(
    "presented",
    ["x" * 129, "has space", "semi;colon", "new\\nline", "<script>", "", "caf\u00e9"],
)
def test_an_odd_request_id_is_replaced(client: FlaskClient, presented: str) -> None:
    response = client.get("/healthz", headers={"X-Request-ID": presented})
    echoed = response.headers["X-Request-ID"]
    assert echoed != presented and GENERATED.fullmatch(echoed)


def test_without_one_each_request_gets_its_own(client: FlaskClient) -> None:
    first = client.get("/nowhere").headers["X-Request-ID"]  # a 404 has one too
    second = client.get("/healthz").headers["X-Request-ID"]
    assert GENERATED.fullmatch(first) and GENERATED.fullmatch(second) and first != second


def test_json_lines_carry_the_request_id_and_never_the_token(json_app: JsonApp) -> None:
    secret = "eyJzIjoxfQ.a-token-from-a-mail"
    response = json_app.app.test_client().get(
        f"/confirm/{secret}?t=secret-query", headers={"X-Request-ID": "trace-me"}
    )
    text = json_app.stream.getvalue()
    assert secret not in text and "secret-query" not in text
    access = [line for line in json_app.lines() if line["logger"] == "newsletter.access"]
    assert len(access) == 1
    assert access[0]["request_id"] == "trace-me"
    assert access[0]["route"] == "/confirm/<token>" and access[0]["method"] == "GET"
    assert access[0]["status"] == response.status_code
    assert access[0]["level"] == "info" and isinstance(access[0]["duration_ms"], float)


def test_a_task_run_during_the_request_logs_its_id_and_the_request_id(
    json_app: JsonApp, db: Session
) -> None:
    # Eager, so the task runs here; a real worker gets the id in the message's headers
    # (tests/integration/test_ops_watch.py).
    json_app.app.extensions["celery"].conf.task_always_eager = True
    make_lists(db)
    json_app.lines()
    response = json_app.app.test_client().post(
        "/subscribe",
        data={"email": "ada@example.org", "newsletter": "daily", "website": ""},
        headers={"X-Request-ID": "signup-1"},
    )
    assert response.status_code == 303
    records = json_app.lines()
    in_tasks = [line for line in records if "task_id" in line]
    assert in_tasks, records
    assert {line["request_id"] for line in in_tasks} == {"signup-1"}
    assert "newsletter.process_signup" in {line["task_name"] for line in in_tasks}
    # After the task, the request's own line still has the request's id and no task.
    access = [line for line in records if line["logger"] == "newsletter.access"][-1]
    assert access["request_id"] == "signup-1" and "task_id" not in access
