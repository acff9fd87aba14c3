"""WSGI entry point for gunicorn and other servers: ``newsletter.wsgi:app``."""

from __future__ import annotations

from newsletter import create_app

app = create_app()
