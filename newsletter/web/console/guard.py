"""The console's blueprint, its session cookie and the guards every console view wears:
:func:`role_required` (a 302 to the login page without a session, a 403 page below the role)
and :func:`login_required` (any role). A view's guard is recorded on it (``console_role``), so
the tests can walk every route.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import Blueprint, Response, g, redirect, render_template, request, url_for
from werkzeug.wrappers import Response as BaseResponse

from newsletter.access.console_sessions import load_session
from newsletter.access.roles import Role, role_at_least
from newsletter.store.models import ConsoleSession, User
from newsletter.web import db, settings
from newsletter.web.pages import (
    content_security_policy,
    private,
    refuse_control_characters_in_query,
)

bp = Blueprint("console", __name__, url_prefix="/console")

F = TypeVar("F", bound=Callable[..., Any])

COOKIE = "console_session"
COOKIE_PATH = "/console"


@bp.before_request
def load_console_user() -> None:
    """Find the session the cookie names (and its user) before any console view runs."""
    refuse_control_characters_in_query()
    g.console_session = None
    g.console_user = None
    token = request.cookies.get(COOKIE, "")
    if not token:
        return
    row = load_session(db(), settings(), token)
    if row is not None:
        db().commit()  # last_seen_at
        g.console_session = row
        g.console_user = row.user


@bp.after_request
def console_headers(response: Response) -> BaseResponse:
    """Our scripts and styles only, and nothing of the console in any cache."""
    content_security_policy(response)
    return private(response)


def current_user() -> User | None:
    """The signed-in user of this request (None on the login page before signing in)."""
    user: User | None = g.get("console_user")
    return user


def current_session() -> ConsoleSession | None:
    """The server-side session of this request."""
    row: ConsoleSession | None = g.get("console_session")
    return row


def cookie_secure() -> bool:
    """Secure cookies in production and whenever the public address is https."""
    s = settings()
    return s.is_production or s.base_url.startswith("https://")


def set_session_cookie(response: BaseResponse, token: str) -> BaseResponse:
    """Give the browser its session id: HttpOnly, SameSite=Strict, only under /console."""
    response.set_cookie(
        COOKIE,
        token,
        max_age=settings().console_session_max_days * 86400,
        path=COOKIE_PATH,
        secure=cookie_secure(),
        httponly=True,
        samesite="Strict",
    )
    return response


def clear_session_cookie(response: BaseResponse) -> BaseResponse:
    """Make the browser forget its session id."""
    response.delete_cookie(
        COOKIE, path=COOKIE_PATH, secure=cookie_secure(), httponly=True, samesite="Strict"
    )
    return response


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a console path of ours, never another site."""
    default = url_for("console.dashboard")
    if not target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/console") or "\\" in target:
        return default
    if parts.path.startswith(url_for("console.login")):
        return default
    return target


def forbidden(minimum: Role) -> tuple[str, int]:
    """The page for a user whose role is below what the page needs."""
    return render_template("web/console/forbidden.html", minimum=minimum), 403


def role_required(minimum: Role, *, setup: bool = False) -> Callable[[F], F]:
    """Let in users of ``minimum`` role or above; others get the login page or a 403.

    Until a user has replaced a one-time password, and enrolled in TOTP when an admin requires
    it, every page sends them there first; ``setup`` marks the pages of those steps.
    """

    def decorate(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            row, user = current_session(), current_user()
            if row is None or user is None:
                target = request.full_path.rstrip("?") if request.method == "GET" else None
                return redirect(url_for("console.login", next=target))
            if row.totp_pending:
                return redirect(url_for("console.login_code"))
            if not setup:
                if user.must_change_password:
                    return redirect(url_for("console.password"))
                if user.totp_required and not user.totp_secret:
                    return redirect(url_for("console.totp"))
            if not role_at_least(user.role, minimum):
                return forbidden(minimum)
            return view(*args, **kwargs)

        wrapper.console_role = minimum  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate


def login_required(view: F) -> F:
    """Any signed-in user (a viewer and up)."""
    return role_required(Role.VIEWER)(view)


def public(view: F) -> F:
    """Mark a console view that needs no session (the login steps)."""
    view.console_role = None  # type: ignore[attr-defined]
    return view


@bp.app_template_global("console_user")
def console_user_global() -> User | None:
    """The signed-in user, for the console layout."""
    return current_user()
