"""Log lines as text or as JSON, each carrying the request id or the Celery task it belongs to.

The context lives in context variables: the web sets the request id for the length of a request
(``newsletter/web/access_log.py``), the worker sets the task id and name, and the request id the
task was enqueued under, for the length of a task (``worker/observe.py``). A filter on our
handler copies them onto every record, whichever logger emitted it, so one signup can be
followed from the web's line to the worker's by one id.

Only the message, its level, logger and context go out: a record's ``args`` are never dumped
raw, and the lines we log ourselves name route patterns, never paths (which hold tokens).
"""

from __future__ import annotations

import json
import logging
import re
import sys
import uuid
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import IO, Any

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s"
# An incoming X-Request-ID is kept only when it is this: short and safe in any log or header.
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
# Record attributes worth a JSON field of their own when a call passes them in ``extra``.
EXTRA_FIELDS = ("method", "route", "status", "duration_ms", "bytes")
# Marks the handler configure_logging installed, so a second call replaces it, never stacks.
HANDLER_MARK = "_newsletter_handler"

request_id_var: ContextVar[str | None] = ContextVar("newsletter_request_id", default=None)
task_id_var: ContextVar[str | None] = ContextVar("newsletter_task_id", default=None)
task_name_var: ContextVar[str | None] = ContextVar("newsletter_task_name", default=None)


def accept_request_id(presented: str | None) -> str:
    """The client's request id when it is sane (≤ 128 of ``[A-Za-z0-9._-]``), else a new one."""
    if presented is not None and SANE_REQUEST_ID.fullmatch(presented):
        return presented
    return uuid.uuid4().hex


def bind_request_id(request_id: str | None) -> Token[str | None]:
    """Make ``request_id`` the current one; pass the token to :func:`reset_request_id`."""
    return request_id_var.set(request_id)


def reset_request_id(token: Token[str | None]) -> None:
    """Undo a :func:`bind_request_id`."""
    request_id_var.reset(token)


def current_request_id() -> str | None:
    """The request id of the request or task being served, if any."""
    return request_id_var.get()


TaskTokens = tuple[Token[str | None], Token[str | None], Token[str | None]]


def bind_task(task_id: str | None, task_name: str | None, request_id: str | None) -> TaskTokens:
    """Make this the current task (and the request it came from); undo with :func:`reset_task`."""
    return (task_id_var.set(task_id), task_name_var.set(task_name), request_id_var.set(request_id))


def reset_task(tokens: TaskTokens) -> None:
    """Undo a :func:`bind_task`: whatever ran the task (a request, eagerly) gets its own back."""
    for var, token in zip((task_id_var, task_name_var, request_id_var), tokens, strict=True):
        try:
            var.reset(token)
        except ValueError:  # set in another context (a pool that moved the task): just clear it
            var.set(None)


class ContextFilter(logging.Filter):
    """Copies the current request id, task id and task name onto each record (never drops one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Add the context attributes a record does not carry yet."""
        for name, var in (
            ("request_id", request_id_var),
            ("task_id", task_id_var),
            ("task_name", task_name_var),
        ):
            if getattr(record, name, None) is None:
                setattr(record, name, var.get())
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, process, context, exception."""

    def format(self, record: logging.LogRecord) -> str:
        """Serialise ``record``; fields without a value are left out."""
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        for name in ("request_id", "task_id", "task_name", *EXTRA_FIELDS):
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def make_handler(log_format: str, stream: IO[str] | None = None) -> logging.Handler:
    """A stream handler (stderr by default) in ``log_format``, with the context filter."""
    if log_format not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {log_format!r}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    handler.addFilter(ContextFilter())
    setattr(handler, HANDLER_MARK, True)
    return handler


def configure_logging(log_format: str, level: int | str = logging.INFO) -> logging.Handler:
    """Send the root logger's records to stderr in ``log_format`` (replacing an earlier call's
    handler, so building the app twice logs each line once); returns the handler."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, HANDLER_MARK, False)]:
        root.removeHandler(old)
    handler = make_handler(log_format)
    root.addHandler(handler)
    root.setLevel(level)
    return handler


def json_everywhere(loggers: tuple[str, ...]) -> None:
    """Give the handlers of these loggers (gunicorn's, set up before our app) the JSON format."""
    for name in loggers:
        for handler in logging.getLogger(name).handlers:
            handler.setFormatter(JsonFormatter())
            if not any(isinstance(f, ContextFilter) for f in handler.filters):
                handler.addFilter(ContextFilter())
