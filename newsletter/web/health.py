"""``/healthz`` (this process answers) and ``/readyz`` (what it needs answers too), both public.

The two answer different questions, so a supervisor can act on each: a failing ``/healthz`` means
the process is stuck and restarting it helps; a failing ``/readyz`` means the database, the broker
or Redis is away, and restarting the web would not bring them back (take it out of rotation
instead). Neither says more than a name and ``ok`` or ``unreachable``: no URL, host or error text.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from newsletter.ops.readiness import OK, readiness
from newsletter.settings import Settings
from newsletter.web import db

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """Always 200 ``{"status": "ok"}`` while the process serves requests: no dependency."""
    return _no_store(jsonify({"status": "ok"}))


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """200 when the database, the broker and (if configured) Redis answer; 503 naming the rest."""
    settings: Settings = current_app.extensions["newsletter.settings"]
    conf = current_app.extensions["celery"].conf
    checks = readiness(
        db(), conf.broker_url, conf.broker_transport_options or {}, settings.redis_url
    )
    ready = all(state == OK for state in checks.values())
    body = {"status": "ok" if ready else "unavailable", "checks": checks}
    return _no_store(jsonify(body)), 200 if ready else 503


def _no_store(response: Response) -> Response:
    """A health answer is about now: no cache may keep it."""
    response.headers["Cache-Control"] = "no-store"
    return response
