"""What Celery tells us about tasks, turned into log context, a request id header and durations.

* ``before_task_publish`` (in whatever process enqueues: web, worker, beat, CLI) writes the
  current request id into the message's headers, so the worker's lines of a task the signup
  request enqueued carry that request's id; no task's arguments change.
* ``task_prerun``/``task_postrun`` (in the process that runs the task) bind the task's id, its
  name and that request id to every log record emitted meanwhile, and time the task into
  ``newsletter_task_duration_seconds`` (served on the worker's metrics port, see
  ``newsletter/cli/servers.py``).
* ``setup_logging``, connected only for ``NEWSLETTER_LOG_FORMAT=json``, replaces Celery's own
  log setup in worker and beat with our JSON lines; text keeps Celery's familiar format.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import Task
from celery.signals import before_task_publish, setup_logging, task_postrun, task_prerun

from newsletter.ops.instruments import TASK_DURATION
from newsletter.ops.logging import (
    SANE_REQUEST_ID,
    TaskTokens,
    bind_task,
    configure_logging,
    current_request_id,
    reset_task,
)

# The message header a task's originating request id travels in.
REQUEST_ID_HEADER = "newsletter_request_id"
# task id -> (when it started, the context tokens to undo): prerun and postrun of one task run
# in one process and thread, but a threads pool runs several tasks at once.
_running: dict[str, tuple[float, TaskTokens]] = {}


def connect_signals(log_format: str) -> None:
    """Connect the receivers (once per process, however many apps are built)."""
    before_task_publish.connect(_add_request_id, weak=False, dispatch_uid="newsletter-rid")
    task_prerun.connect(_task_started, weak=False, dispatch_uid="newsletter-prerun")
    task_postrun.connect(_task_finished, weak=False, dispatch_uid="newsletter-postrun")
    if log_format == "json":
        setup_logging.connect(_json_logging, weak=False, dispatch_uid="newsletter-logging")
    else:
        setup_logging.disconnect(dispatch_uid="newsletter-logging")


def _add_request_id(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """Put the current request id into the message headers of a task being enqueued."""
    request_id = current_request_id()
    if request_id is not None and headers is not None:
        headers[REQUEST_ID_HEADER] = request_id


def _task_started(task_id: str, task: Task, **_: Any) -> None:
    """Bind the task's context for its log lines and start its clock."""
    presented = getattr(task.request, REQUEST_ID_HEADER, None)
    # A header anyone who can publish could write: kept only when sane, like X-Request-ID. A
    # task run eagerly (no message) keeps the request id of the request it runs in.
    sane = isinstance(presented, str) and SANE_REQUEST_ID.fullmatch(presented) is not None
    request_id = presented if sane else current_request_id()
    tokens = bind_task(task_id, task.name, request_id)
    _running[task_id] = (time.perf_counter(), tokens)


def _task_finished(task_id: str, task: Task, state: str | None = None, **_: Any) -> None:
    """Record the task's duration by name and final state, then unbind its context."""
    started = _running.pop(task_id, None)
    if started is None:
        return
    began, tokens = started
    TASK_DURATION.labels(task.name, (state or "unknown").lower()).observe(
        time.perf_counter() - began
    )
    reset_task(tokens)


def _json_logging(loglevel: int | str | None = None, **_: Any) -> None:
    """Celery asks how to log: JSON lines on stderr at the worker's or beat's level."""
    configure_logging("json", loglevel or logging.INFO)
