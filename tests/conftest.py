"""Shared fixtures: settings over a temporary SQLite file, the app, its client, an SMTP sink."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from newsletter import create_app
from newsletter.settings import Settings
from newsletter.store.db import dispose_engines, get_sessionmaker
from newsletter.store.migrate import upgrade
from tests.support.smtp import SMTPSink

# Debian's Chromium for the browser tests (fixtures `chromium` and `page`).
pytest_plugins = ["tests.support.browser"]

TEST_SECRET = "test-secret-key-that-is-long-enough-0123456789"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Testing settings: a fresh migrated SQLite file, mail captured under tmp_path."""
    s = Settings(env="testing", data_dir=tmp_path, secret_key=TEST_SECRET).with_defaults()
    upgrade(s.database_url)
    return s


@pytest.fixture
def app(settings: Settings) -> Iterator[Flask]:
    """The Flask app over the test settings."""

    application = create_app(settings)
    yield application
    dispose_engines()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """Flask's test client."""
    return app.test_client()


@pytest.fixture
def db(settings: Settings) -> Iterator[Session]:
    """A database session for arranging and asserting rows."""
    session = get_sessionmaker(settings.database_url)()
    yield session
    session.close()


@pytest.fixture
def smtp_sink() -> Iterator[SMTPSink]:
    """A real aiosmtpd server on a free loopback port."""
    sink = SMTPSink().start()
    yield sink
    sink.stop()


@pytest.fixture
def smtp_settings(settings: Settings, smtp_sink: SMTPSink) -> Settings:
    """Test settings that deliver to the aiosmtpd sink instead of capturing."""
    return replace(settings, smtp_url=smtp_sink.url)
