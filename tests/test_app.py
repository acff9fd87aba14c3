"""The application factory: proxies, security headers, error pages."""

from __future__ import annotations

from dataclasses import replace

from flask import Flask, request
from flask.testing import FlaskClient

from newsletter import create_app
from newsletter.settings import Settings


def _remote_addr_app(settings: Settings) -> Flask:
    app = create_app(settings)

    @app.get("/_whoami")
    def whoami() -> str:
        return f"{request.remote_addr} {request.scheme}"

    return app


def test_forwarded_headers_are_ignored_without_trusted_proxies(settings: Settings) -> None:
    client = _remote_addr_app(settings).test_client()
    response = client.get("/_whoami", headers={"X-Forwarded-For": "203.0.113.9"})
    assert response.text == "127.0.0.1 http"


def test_forwarded_headers_are_honoured_behind_a_trusted_proxy(settings: Settings) -> None:
    app = _remote_addr_app(replace(settings, trusted_proxies=1))
    response = app.test_client().get(
        "/_whoami", headers={"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"}
    )
    assert response.text == "203.0.113.9 https"


def test_unknown_pages_get_a_page_and_api_paths_get_json(client: FlaskClient) -> None:
    page = client.get("/no-such-page")
    assert page.status_code == 404
    assert page.mimetype == "text/html"
    api = client.get("/api/v1/no-such-thing")
    assert api.status_code == 404
    assert api.get_json()["status"] == 404


def test_pages_refuse_framing_and_sniffing(client: FlaskClient) -> None:
    response = client.get("/")
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "no-referrer"
