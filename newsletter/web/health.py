"""``/healthz``: is this web process able to serve? Checks the database with ``SELECT 1``."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from newsletter.web import db

bp = Blueprint("health", __name__)
log = logging.getLogger(__name__)


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    """200 with ``{"status": "ok"}`` when the database answers, 503 otherwise."""
    try:
        db().execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        # The reason goes to the log only: a health endpoint is public.
        log.warning("health check: database unreachable: %s", exc.__class__.__name__)
        response = jsonify({"status": "error", "database": "unreachable"})
        response.headers["Cache-Control"] = "no-store"
        return response, 503
    response = jsonify({"status": "ok", "database": "ok"})
    response.headers["Cache-Control"] = "no-store"
    return response, 200
