"""The access log: one line per request on the ``newsletter.access`` logger, with the method, the
route pattern, the status, the time taken and the size of the response.

Links we mail carry signed tokens in their path (``/confirm/<token>``, ``/preferences/<token>``,
``/unsubscribe/<token>``, ``/archive/<token>``) and may carry more in the query, so the line
names the route's pattern (``/preferences/<token>``), never the path or the query; a request no
route matches is ``<unmatched>``, since a wrong token is still someone's token mistyped. No
client address and no user agent either: nothing here needs them. This replaces gunicorn's
and the development server's own request logs, which print the full path.

The same hooks give each request its id (a sane ``X-Request-ID`` from the client or proxy, else a
new one), echoed in the response and carried by every log line of the request and of the tasks
it enqueues (``newsletter/ops/logging.py``), and time it into the latency histogram by the same
route pattern (``newsletter/ops/instruments.py``).
"""

from __future__ import annotations

import logging
import sys
import time

from flask import Flask, Request, Response, g, request

from newsletter.ops.instruments import HTTP_REQUEST_DURATION, status_class
from newsletter.ops.logging import accept_request_id, bind_request_id, reset_request_id

REQUEST_ID_HEADER = "X-Request-ID"
log = logging.getLogger("newsletter.access")
UNMATCHED = "<unmatched>"
FORMAT = "%(asctime)s [%(process)d] [access] %(message)s"


def init_access_log(app: Flask) -> None:
    """Log one line per request of ``app``; give the logger a handler if logging has none."""
    log.setLevel(logging.INFO)
    if not log.handlers and not logging.getLogger().handlers:
        # Nothing configured logging (gunicorn only sets up its own loggers): the line goes to
        # stderr beside gunicorn's error log, never into what a command prints on stdout.
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(FORMAT))
        log.addHandler(handler)

    @app.before_request
    def start_clock() -> None:
        g.access_started = time.perf_counter()
        g.request_id = accept_request_id(request.headers.get(REQUEST_ID_HEADER))
        g.request_id_token = bind_request_id(g.request_id)

    @app.after_request
    def log_request(response: Response) -> Response:
        started = g.get("access_started")
        elapsed = time.perf_counter() - started if started else None
        duration = f"{elapsed * 1000:.1f}ms" if elapsed is not None else "-"
        size = response.content_length
        method, route, status = method_of(request), route_of(request), response.status_code
        log.info(
            "%s %s %s %s %s",
            method,
            route,
            status,
            duration,
            "-" if size is None else f"{size}B",
            extra={
                "method": method,
                "route": route,
                "status": status,
                "duration_ms": None if elapsed is None else round(elapsed * 1000, 1),
                "bytes": size,
            },
        )
        if elapsed is not None:
            HTTP_REQUEST_DURATION.labels(route, method, status_class(status)).observe(elapsed)
        if "request_id" in g:
            # Ours, checked or made by accept_request_id: safe to write as a header.
            response.headers[REQUEST_ID_HEADER] = g.request_id
        return response

    @app.teardown_request
    def forget_request_id(_exc: BaseException | None) -> None:
        token = g.pop("request_id_token", None)
        if token is not None:
            reset_request_id(token)


def route_of(req: Request) -> str:
    """The pattern of the route that matched (``/preferences/<token>``), else ``<unmatched>``."""
    rule = req.url_rule
    return rule.rule if rule is not None else UNMATCHED


def method_of(req: Request) -> str:
    """The request method when it is a plain word (a client can send anything there)."""
    method = req.method
    return method if method.isascii() and method.isalpha() and len(method) <= 10 else "<other>"
