"""The JSON API under /api/v1: scoped bearer-token auth and JSON errors. Routes live beside it."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import Blueprint, Response, g, jsonify, request

from newsletter.access.api_tokens import SCOPES, authenticate, has_scope
from newsletter.store.models import ApiToken
from newsletter.web import db

bp = Blueprint("api", __name__, url_prefix="/api/v1")

F = TypeVar("F", bound=Callable[..., Any])


class ApiError(Exception):
    """An error answered as JSON with its status."""

    def __init__(self, status: int, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details


@bp.errorhandler(ApiError)
def api_error(exc: ApiError) -> tuple[Response, int]:
    """Answer an ApiError as ``{"error": {...}}``."""
    body = {"error": {"status": exc.status, "message": exc.message, **exc.details}}
    return jsonify(body), exc.status


def require_token(scope: str) -> Callable[[F], F]:
    """Refuse requests without a valid ``Authorization: Bearer <token>`` (401) or whose token
    lacks ``scope`` (403, naming it)."""
    if scope not in SCOPES:  # a typo fails at import, not as a 403 for everyone
        raise ValueError(f"unknown scope {scope!r}")

    def decorate(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            token = _bearer_token()
            if not has_scope(token, scope):
                raise ApiError(
                    403,
                    f"this token lacks the scope '{scope}'; create one that has it with "
                    f"`newsletter tokens create NAME --scope {scope}`",
                    scope=scope,
                )
            g.api_token = token
            return view(*args, **kwargs)

        wrapper.required_scope = scope  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate


def verified_by(mechanism: str) -> Callable[[F], F]:
    """Mark a route that authenticates its caller by ``mechanism`` (a provider's signature),
    not by our bearer token: every API route declares one or the other."""

    def decorate(view: F) -> F:
        view.verified_by = mechanism  # type: ignore[attr-defined]
        return view

    return decorate


def _bearer_token() -> ApiToken:
    """The live token the request presents; 401 when it has none or a bad one."""
    header = request.headers.get("Authorization", "")
    scheme, _, presented = header.partition(" ")
    if scheme.lower() != "bearer" or not presented.strip():
        raise ApiError(
            401,
            "missing bearer token; create one with `newsletter tokens create NAME --scope SCOPE`",
        )
    token = authenticate(db(), presented.strip())
    if token is None:
        raise ApiError(401, "invalid or revoked token")
    db().commit()  # last_used_at, also when the scope is missing: the token was presented
    return token


def json_body() -> dict[str, Any]:
    """The request's JSON object, or a 400 that says what is wrong."""
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise ApiError(
            400, "the request body must be a JSON object (Content-Type: application/json)"
        )
    return data
