"""The access log: one line per request on the ``newsletter.access`` logger, with the method, the
route pattern, the status, the time taken and the size of the response.

Links we mail carry signed tokens in their path (``/confirm/<token>``, ``/preferences/<token>``,
``/unsubscribe/<token>``, ``/archive/<token>``) and may carry more in the query, so the line
names the route's pattern (``/preferences/<token>``), never the path or the query; a request no
route matches is ``<unmatched>``, since a wrong token is still someone's token mistyped. No
client address and no user agent either: nothing here needs them. This replaces gunicorn's
and the development server's own request logs, which print the full path.
"""

from __future__ import annotations

import logging
import sys
import time

from flask import Flask, Request, Response, g, request

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

    @app.after_request
    def log_request(response: Response) -> Response:
        started = g.get("access_started")
        duration = f"{(time.perf_counter() - started) * 1000:.1f}ms" if started else "-"
        size = response.content_length
        log.info(
            "%s %s %s %s %s",
            method_of(request),
            route_of(request),
            response.status_code,
            duration,
            "-" if size is None else f"{size}B",
        )
        return response


def route_of(req: Request) -> str:
    """The pattern of the route that matched (``/preferences/<token>``), else ``<unmatched>``."""
    rule = req.url_rule
    return rule.rule if rule is not None else UNMATCHED


def method_of(req: Request) -> str:
    """The request method when it is a plain word (a client can send anything there)."""
    method = req.method
    return method if method.isascii() and method.isalpha() and len(method) <= 10 else "<other>"
