"""Thin Celery tasks: they carry ids, call into newsletter/, and are safe to run twice.

Tasks are declared with ``shared_task`` so this module never imports an app object.
"""

from __future__ import annotations

import logging

from flask import current_app

from newsletter.settings import Settings

log = logging.getLogger(__name__)


def settings() -> Settings:
    """Settings of the Flask app the task runs in."""
    value: Settings = current_app.extensions["newsletter.settings"]
    return value
