"""``/metrics`` for Prometheus, behind a bearer token with ``metrics:read`` (not public)."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from newsletter.access.api_tokens import authenticate, has_scope
from newsletter.ops.instruments import HTTP_REQUEST_DURATION, exposed
from newsletter.ops.metrics import DatabaseCollector, QueueDepthCollector
from newsletter.web import db

bp = Blueprint("metrics", __name__)
SCOPE = "metrics:read"
# The Celery queues (worker/app.py), set by the app factory: web does not import worker.
QUEUES_KEY = "newsletter.queues"


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus text format; 401 without a valid bearer token, 403 without ``metrics:read``."""
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    token = authenticate(db(), presented.strip()) if scheme.lower() == "bearer" else None
    if token is None:
        return _refusal(
            401,
            "a bearer token is required: create one with "
            f"`newsletter tokens create prometheus --scope {SCOPE}`",
        )
    db().commit()  # the token's last_used_at
    if not has_scope(token, SCOPE):
        return _refusal(
            403,
            f"this token lacks the scope '{SCOPE}': create one with "
            f"`newsletter tokens create prometheus --scope {SCOPE}`",
        )
    # A registry per scrape: the collector reads through this request's session.
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(db()))
    conf = current_app.extensions["celery"].conf
    queues = current_app.extensions.get(QUEUES_KEY, ())
    registry.register(
        QueueDepthCollector(conf.broker_url, conf.broker_transport_options or {}, queues)
    )
    exposed(registry, HTTP_REQUEST_DURATION)
    response = Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
    response.headers["Cache-Control"] = "no-store"
    return response


def _refusal(status: int, message: str) -> Response:
    """A plain-text refusal, like the scrape itself; a 403 names the scope as RFC 6750 does."""
    challenge = "Bearer"
    if status == 403:
        challenge = f'Bearer error="insufficient_scope", scope="{SCOPE}"'
    return Response(
        message + "\n",
        status=status,
        mimetype="text/plain",
        headers={"WWW-Authenticate": challenge},
    )
