"""The newsletter service: subscription, digests and dispatch for a news site."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from flask import Flask

    from newsletter.settings import Settings


def create_app(settings: Settings | None = None) -> Flask:
    """Build the Flask app (and its Celery app) from settings; nothing happens at import."""
    from newsletter.app import build_app

    return build_app(settings)
