"""Reader pages: signup, confirmation, preferences and unsubscribe."""

from __future__ import annotations

from flask import Blueprint, render_template

bp = Blueprint("public", __name__)


@bp.get("/")
def index() -> str:
    """The signup page."""
    return render_template("web/error.html", status=200, title="Stay in touch", message="")
