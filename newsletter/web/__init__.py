"""Web adapters: blueprints that parse input, call the domain core and shape the output."""

from __future__ import annotations

from flask import current_app, g
from sqlalchemy.orm import Session

from newsletter.settings import Settings


def db() -> Session:
    """The request's database session."""
    session: Session = g.db
    return session


def settings() -> Settings:
    """The app's settings object."""
    value: Settings = current_app.extensions["newsletter.settings"]
    return value
