"""/healthz (the process answers) and /readyz (the database, the broker and Redis answer)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

from flask.testing import FlaskClient

from newsletter import create_app
from newsletter.settings import Settings
from newsletter.store.db import dispose_engines
from tests.support.redis_server import redis_server
from tests.support.smtp import free_port

DEAD_DATABASE = "postgresql+psycopg://nobody:pw@127.0.0.1:{port}/nothing?connect_timeout=2"


@contextmanager
def client_for(settings: Settings) -> Iterator[FlaskClient]:
    """A test client of an app over ``settings``."""
    app = create_app(settings)
    try:
        yield app.test_client()
    finally:
        dispose_engines()


def test_healthz_answers_while_the_process_serves_even_without_a_database(
    settings: Settings,
) -> None:
    dead = replace(settings, database_url=DEAD_DATABASE.format(port=free_port()))
    with client_for(dead) as client:
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}
    assert response.headers["Cache-Control"] == "no-store"


def test_readyz_is_ok_with_the_embedded_database_and_broker(client: FlaskClient) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200, response.text
    # No Redis is configured, so none is checked.
    assert response.get_json() == {"status": "ok", "checks": {"database": "ok", "broker": "ok"}}
    assert response.headers["Cache-Control"] == "no-store"


def test_readyz_is_503_naming_the_database_without_details(settings: Settings) -> None:
    dead = replace(settings, database_url=DEAD_DATABASE.format(port=free_port()))
    with client_for(dead) as client:
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json() == {
        "status": "unavailable",
        "checks": {"database": "unreachable", "broker": "ok"},
    }
    assert b"nobody" not in response.data and b"psycopg" not in response.data


def test_readyz_follows_a_real_redis_broker_going_away_and_coming_back(
    settings: Settings,
) -> None:
    with redis_server() as redis:
        configured = replace(
            settings,
            broker_url=f"redis://:broker-secret@127.0.0.1:{redis.port}/0",
            redis_url=f"redis://:limits-secret@127.0.0.1:{redis.port}/1",
        )
        # A password is set in the URLs and the server wants none: Redis accepts AUTH then.
        with client_for(configured) as client:
            up = client.get("/readyz")
            assert up.status_code == 200, up.text
            assert up.get_json()["checks"] == {"database": "ok", "broker": "ok", "redis": "ok"}

            redis.kill()
            down = client.get("/readyz")
            assert down.status_code == 503
            assert down.get_json() == {
                "status": "unavailable",
                "checks": {"database": "ok", "broker": "unreachable", "redis": "unreachable"},
            }
            assert down.headers["Cache-Control"] == "no-store"
            for secret in (b"broker-secret", b"limits-secret", str(redis.port).encode()):
                assert secret not in down.data
            assert client.get("/healthz").status_code == 200  # the process itself is fine

            redis.start()
            back = client.get("/readyz")
            assert back.status_code == 200, back.text
            assert back.get_json()["checks"]["broker"] == "ok"
