"""/healthz: what load balancers and docker-compose poll."""

from __future__ import annotations

from dataclasses import replace

from flask.testing import FlaskClient

from newsletter import create_app
from newsletter.settings import Settings
from newsletter.store.db import dispose_engines
from tests.support.smtp import free_port


def test_healthz_is_ok_when_the_database_answers(client: FlaskClient) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "database": "ok"}
    assert response.headers["Cache-Control"] == "no-store"


def test_healthz_is_503_without_details_when_the_database_is_down(settings: Settings) -> None:
    url = f"postgresql+psycopg://nobody:pw@127.0.0.1:{free_port()}/nothing?connect_timeout=2"
    app = create_app(replace(settings, database_url=url))
    try:
        response = app.test_client().get("/healthz")
    finally:
        dispose_engines()
    assert response.status_code == 503
    assert response.get_json() == {"status": "error", "database": "unreachable"}
    assert b"nobody" not in response.data and b"psycopg" not in response.data
