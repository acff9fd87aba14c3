"""``/metrics`` for Prometheus, behind an API bearer token (the figures are not public)."""

from __future__ import annotations

from flask import Blueprint, Response, request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from newsletter.access.api_tokens import authenticate
from newsletter.ops.metrics import DatabaseCollector
from newsletter.web import db

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus text format; 401 without a valid ``Authorization: Bearer`` token."""
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or authenticate(db(), presented.strip()) is None:
        return Response(
            "a bearer token is required: create one with `newsletter tokens create prometheus`\n",
            status=401,
            mimetype="text/plain",
            headers={"WWW-Authenticate": "Bearer"},
        )
    db().commit()  # the token's last_used_at
    # A registry per scrape: the collector reads through this request's session.
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DatabaseCollector(db()))
    response = Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
    response.headers["Cache-Control"] = "no-store"
    return response
