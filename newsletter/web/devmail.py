"""Development-only mail viewer: every captured mail, readable as HTML and text."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("devmail", __name__, url_prefix="/dev/mail")
