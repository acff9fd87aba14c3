"""The JSON API under /api/v1: scoped bearer-token auth and its one error shape, RFC 9457
problem details (``application/problem+json``). Routes live beside it (api_*.py); their
schemas in api_schemas.py and the OpenAPI document built from them in openapi.py."""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps
from http import HTTPStatus
from typing import Any, TypeVar

from flask import Blueprint, Response, g, request

from newsletter.access.api_tokens import SCOPES, authenticate, has_scope
from newsletter.store.models import ApiToken
from newsletter.web import db

bp = Blueprint("api", __name__, url_prefix="/api/v1")

F = TypeVar("F", bound=Callable[..., Any])
PROBLEM_TYPE = "application/problem+json"


class ApiError(Exception):
    """An error answered as a problem: its status, ``message`` as the ``detail``, ``details`` as
    extension members (e.g. ``scope``, ``field``, ``errors``)."""

    def __init__(self, status: int, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details
        self.headers: dict[str, str] = {}


def problem(
    status: int, detail: str, headers: dict[str, str] | None = None, **extensions: Any
) -> Response:
    """An RFC 9457 problem response: ``type`` about:blank, ``title`` the status phrase."""
    try:
        title = HTTPStatus(status).phrase
    except ValueError:
        title = "Error"
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    # The four members are the standard's: an extension never overrides them.
    body.update({k: v for k, v in extensions.items() if k not in body})
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM_TYPE)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


@bp.errorhandler(ApiError)
def api_error(exc: ApiError) -> Response:
    """Answer an ApiError as a problem."""
    return problem(exc.status, exc.message, headers=exc.headers, **exc.details)


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
                refusal = ApiError(
                    403,
                    f"this token lacks the scope '{scope}'; create one that has it with "
                    f"`newsletter tokens create NAME --scope {scope}`",
                    scope=scope,
                )
                # RFC 6750 3.1: which scope would do (scope names are our own ASCII constants).
                refusal.headers["WWW-Authenticate"] = (
                    f'Bearer error="insufficient_scope", scope="{scope}"'
                )
                raise refusal
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
        missing = ApiError(
            401,
            "missing bearer token; create one with `newsletter tokens create NAME --scope SCOPE`",
        )
        missing.headers["WWW-Authenticate"] = "Bearer"  # RFC 6750 3: how to authenticate
        raise missing
    token = authenticate(db(), presented.strip())
    if token is None:
        invalid = ApiError(401, "invalid or revoked token")
        invalid.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
        raise invalid
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
