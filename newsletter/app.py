"""The composition root: the Flask app factory, which also builds the Celery app and the ports.

Everything is wired here and only here: settings, the database session per request, the web
extensions, every blueprint, and the queues through which the core asks for background work.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from flask import Flask, Response, g, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import IntegerConverter, Map

from newsletter.hooks.queue import enqueue_after_commit
from newsletter.mail.templates import template_loader, templates_root
from newsletter.ops.logging import configure_logging, json_everywhere
from newsletter.settings import Settings
from newsletter.store.db import get_sessionmaker
from newsletter.store.models import MAX_ID
from newsletter.web import (
    api,
    api_deliveries,  # noqa: F401  (adds its routes to api.bp)
    api_dispatch,  # noqa: F401  (adds its routes to api.bp)
    api_feeds,  # noqa: F401  (adds its routes to api.bp)
    api_hooks,  # noqa: F401  (adds its routes to api.bp)
    api_inbound,  # noqa: F401  (adds its routes to api.bp)
    api_newsletters,  # noqa: F401  (adds its routes to api.bp)
    api_posts,  # noqa: F401  (adds its routes to api.bp)
    api_subscribers,  # noqa: F401  (adds its routes to api.bp)
    api_suppressions,  # noqa: F401  (adds its routes to api.bp)
    api_webhooks,  # noqa: F401  (adds its routes to api.bp)
    archive,
    console,
    devmail,
    health,
    metrics,
    openapi,  # noqa: F401  (adds /api/v1/openapi.json and /api/v1/docs to api.bp)
    public,
    reader_links,
)
from newsletter.web.access_log import init_access_log, method_of, route_of
from newsletter.web.extensions import csrf, limiter
from worker.app import QUEUES, celery_init_app
from worker.tasks import CeleryMailQueue, CeleryQueue, CeleryWebhookQueue

log = logging.getLogger(__name__)
# gunicorn configures these before it loads the app; their lines should be JSON as well.
GUNICORN_LOGGERS = ("gunicorn.error",)


def build_app(settings: Settings | None = None) -> Flask:
    """Create the app: settings, database session, security, blueprints, Celery."""
    settings = settings or Settings.from_env()
    app = Flask(
        "newsletter",
        template_folder=str(templates_root()),
        static_folder=str(templates_root() / "static"),
    )
    app.jinja_loader = template_loader(settings)
    # Before any blueprint adds a rule: every <int:...> in a URL is then a possible row id.
    app.url_map.converters["int"] = IdConverter
    if settings.trusted_proxies:
        # Behind N reverse proxies the client address (rate limits, consent ledger) and the
        # scheme come from X-Forwarded-*; trusting them without a proxy would let anyone forge them.
        n = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)  # type: ignore[method-assign]
    _configure(app, settings)
    app.extensions["newsletter.settings"] = settings
    app.jinja_env.globals["settings"] = settings

    _init_logging(settings)
    # First, so its clock starts before any other before_request hook can answer the request.
    init_access_log(app)
    _init_db(app, settings)
    csrf.init_app(app)
    limiter.init_app(app)
    _init_errors(app)
    _init_security_headers(app)

    _register_blueprints(app, settings)
    celery_init_app(app, settings)
    app.extensions[metrics.QUEUES_KEY] = QUEUES  # the queues /metrics reads the depth of
    # The ports the core enqueues background work through (newsletter.issues.queue,
    # newsletter.readers.mail_queue); web views and CLI commands read them from here.
    app.extensions["newsletter.task_queue"] = CeleryQueue()
    app.extensions["newsletter.mail_queue"] = CeleryMailQueue()
    # Webhook deliveries are enqueued by the session that wrote them, once it commits
    # (newsletter.hooks.queue): every session of the app, the worker and the CLI alike.
    enqueue_after_commit(get_sessionmaker(settings.database_url), CeleryWebhookQueue())
    return app


def create_celery(settings: Settings | None = None) -> Celery:
    """The Celery app for `newsletter worker` and `newsletter beat`, built with the Flask app."""
    celery_app: Celery = build_app(settings).extensions["celery"]
    return celery_app


def _configure(app: Flask, settings: Settings) -> None:
    """Flask's own configuration, from our settings: sessions, CSRF, limits, body sizes."""
    app.config.update(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        MAX_FORM_MEMORY_SIZE=settings.max_body_bytes,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.base_url.startswith("https://"),
        WTF_CSRF_TIME_LIMIT=None,
        RATELIMIT_STORAGE_URI=settings.redis_url or "memory://",
        RATELIMIT_HEADERS_ENABLED=True,
        TESTING=settings.env == "testing",
    )


def _init_logging(settings: Settings) -> None:
    """JSON lines on stderr when NEWSLETTER_LOG_FORMAT=json, gunicorn's own lines included;
    text leaves logging as it was (the access log adds its handler when none exists)."""
    if settings.log_format == "json":
        configure_logging("json")
        json_everywhere(GUNICORN_LOGGERS)


def _register_blueprints(app: Flask, settings: Settings) -> None:
    """Every page and API route; the dev mail viewer only outside production."""
    app.register_blueprint(health.bp)  # /healthz (process up) and /readyz (dependencies up)
    app.register_blueprint(metrics.bp)  # /metrics for Prometheus (bearer token)
    app.register_blueprint(public.bp)
    app.register_blueprint(reader_links.bp)  # /unsubscribe, /preferences, /data (mailed links)
    app.register_blueprint(archive.bp)  # /archive/<token>, /preview/<token>
    app.register_blueprint(console.bp)  # /console: the newsroom console, behind a login
    csrf.exempt(api.bp)  # bearer-token auth, no cookies: CSRF does not apply
    app.register_blueprint(api.bp)
    if not settings.is_production:
        app.register_blueprint(devmail.bp)


class IdConverter(IntegerConverter):
    """``<int:...>`` bounded to ids the database can hold: a larger number is a 404, not a 500."""

    def __init__(self, url_map: Map, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", MAX_ID)
        super().__init__(url_map, *args, **kwargs)


def _init_db(app: Flask, settings: Settings) -> None:
    """A session per request, closed (and rolled back if uncommitted) at teardown."""
    factory = get_sessionmaker(settings.database_url)

    @app.before_request
    def open_session() -> None:
        g.db = factory()

    @app.teardown_request
    def close_session(_exc: BaseException | None) -> None:
        session = g.pop("db", None)
        if session is not None:
            session.close()


def _init_errors(app: Flask) -> None:
    """Every error is a clear page or, for the API, an RFC 9457 problem; never a traceback."""

    def wants_json() -> bool:
        return request.path.startswith("/api/") or request.accept_mimetypes.best in (
            "application/json",
            api.PROBLEM_TYPE,
        )

    def render_error(
        status: int, title: str, message: str, headers: dict[str, str] | None = None
    ) -> tuple[Response | str, int]:
        if wants_json():
            return api.problem(status, message, headers=headers), status
        return render_template("web/error.html", status=status, title=title, message=message), (
            status
        )

    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError) -> tuple[Response | str, int]:
        return render_error(
            400,
            "Form expired",
            "The form was open too long or came from elsewhere. "
            "Please go back, reload the page and try again.",
        )

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response | str, int]:
        status = exc.code or 500
        messages = {
            413: "What you sent is larger than this service accepts.",
            429: "Too many requests. Please wait a little and try again.",
            404: "There is nothing at this address.",
            405: "This page does not accept that kind of request.",
        }
        message = messages.get(status, exc.description or "")
        # Allow (405) and Retry-After (429, 503) tell a client what to do next.
        kept = {k: v for k, v in exc.get_headers() if k in ("Allow", "Retry-After")}
        return render_error(status, exc.name, message, kept)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> tuple[Response | str, int]:
        # The route's pattern, not the path: the path of a mailed link carries its token.
        log.exception("unhandled error on %s %s", method_of(request), route_of(request))
        return render_error(
            500, "Something went wrong", "The error was logged. Please try again later."
        )


def _init_security_headers(app: Flask) -> None:
    """Conservative headers; the embeddable form is the only page allowed in a frame."""

    @app.after_request
    def headers(response: Response) -> Response:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        if not request.path.startswith("/embed"):
            response.headers.setdefault("X-Frame-Options", "DENY")
        return response
