"""In-process Prometheus histograms: HTTP request latency (web) and task durations (worker).

Unlike the database gauges, these can only be measured where the work happens. Each process
keeps its own, so a web scrape sees web requests and a worker's metrics port sees its tasks.

A server of several processes (gunicorn ``--workers``, Celery's prefork pool) shares them
through prometheus_client's multiprocess mode: with ``PROMETHEUS_MULTIPROC_DIR`` set (an empty
folder of its own for each web and each worker), every process writes its samples to files there
and :func:`exposed` reads them all back. Without it, each process reports only its own requests.
"""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import Histogram
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import CollectorRegistry

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Pages and API calls take milliseconds; a slow SMTP-bound or database-bound one seconds.
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# A send_batch of 500 mails may take minutes; a confirmation mail well under a second.
TASK_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)

# registry=None: they are added to a registry per scrape (or read from files), not a global one.
HTTP_REQUEST_DURATION = Histogram(
    "newsletter_http_request_duration_seconds",
    "Time to answer an HTTP request, by route pattern (never the path), method and status class.",
    labelnames=("route", "method", "status"),
    buckets=HTTP_BUCKETS,
    registry=None,
)
TASK_DURATION = Histogram(
    "newsletter_task_duration_seconds",
    "Time a Celery task ran in a worker, by task name and final state.",
    labelnames=("task", "state"),
    buckets=TASK_BUCKETS,
    registry=None,
)


def multiprocess_dir() -> Path | None:
    """The folder of multiprocess mode, when this process was started in it."""
    folder = os.environ.get(MULTIPROC_ENV, "")
    return Path(folder) if folder else None


def status_class(status: int) -> str:
    """``2xx``, ``4xx``, …: a label with five values, not one per status code."""
    return f"{status // 100}xx" if 100 <= status <= 599 else "other"


def exposed(registry: CollectorRegistry, histogram: Histogram) -> None:
    """Add ``histogram`` to ``registry``: every process's samples in multiprocess mode, else
    this process's own."""
    if multiprocess_dir() is not None:
        MultiProcessCollector(registry)
    else:
        registry.register(histogram)


def clear_multiprocess_dir() -> None:
    """Remove the sample files of an earlier run (prometheus_client asks for it before start)."""
    folder = multiprocess_dir()
    if folder is None:
        return
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink(missing_ok=True)
