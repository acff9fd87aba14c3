"""Fixtures of the inbound tests: an app context to render mails in, and a World to send them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask
from sqlalchemy.orm import Session

from newsletter.mail.transport import close_transports
from newsletter.settings import Settings
from tests.support.inbound import World
from tests.support.smtp import SMTPSink


@pytest.fixture
def app(app: Flask) -> Iterator[Flask]:
    """conftest's app with an app context pushed (its Jinja environment renders the mails)."""
    with app.app_context():
        yield app
    close_transports()


@pytest.fixture
def world(app: Flask, db: Session, settings: Settings, smtp_sink: SMTPSink) -> World:
    """Offers (alice, bob) and weekly (bob, carol), nothing sent yet."""
    return World.build(db, settings, smtp_sink)
