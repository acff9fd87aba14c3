"""`newsletter worker` with NEWSLETTER_WORKER_METRICS_PORT: served for a pool whose tasks the
port can see, refused for prefork without multiprocess mode (it would be served empty)."""

from __future__ import annotations

from dataclasses import replace

import click
import pytest
import requests

from newsletter.cli.servers import serve_task_metrics
from newsletter.ops.instruments import MULTIPROC_ENV
from newsletter.settings import Settings
from tests.support.smtp import free_port


def test_off_unless_a_port_is_set(settings: Settings) -> None:
    assert serve_task_metrics(settings, "prefork") is None


def test_prefork_without_a_multiprocess_folder_is_refused(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    with pytest.raises(click.UsageError, match=MULTIPROC_ENV):
        serve_task_metrics(replace(settings, worker_metrics_port=free_port()), "prefork")


def test_a_threads_pool_serves_its_task_durations(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)
    port = free_port()
    server = serve_task_metrics(replace(settings, worker_metrics_port=port), "threads")
    assert server is not None
    try:
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    finally:
        server.shutdown()
        server.server_close()
    assert "# TYPE newsletter_task_duration_seconds histogram" in text


def test_a_port_in_use_is_one_clear_error(settings: Settings) -> None:
    port = free_port()
    first = serve_task_metrics(replace(settings, worker_metrics_port=port), "solo")
    assert first is not None
    try:
        with pytest.raises(click.ClickException, match=f"cannot serve worker metrics on .*:{port}"):
            serve_task_metrics(replace(settings, worker_metrics_port=port), "solo")
    finally:
        first.shutdown()
        first.server_close()
