"""Outbound webhook endpoints: /api/v1/webhooks and /api/v1/webhooks/<id>[/deliveries|/test].

(The relays' inbound feedback webhooks, /api/v1/webhooks/<provider>, are web/api_webhooks.py.)
"""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify, request

from newsletter.hooks.endpoints import (
    EndpointNotFound,
    WebhookError,
    deliveries,
    delivery_as_json,
    endpoint_as_json,
    get_endpoint,
    list_endpoints,
    register,
    remove,
    send_test,
    update,
)
from newsletter.store.models import WebhookEndpoint
from newsletter.web import db, settings
from newsletter.web.api import ApiError, bp, json_body, require_token

MAX_DELIVERIES = 100


def _endpoint(endpoint_id: int) -> WebhookEndpoint:
    """The endpoint with this id, or a 404."""
    try:
        return get_endpoint(db(), endpoint_id)
    except EndpointNotFound as exc:
        raise ApiError(404, str(exc)) from None


def _refused(exc: WebhookError) -> ApiError:
    """A refused registration or change as a 400 naming the field."""
    return ApiError(400, str(exc), field=exc.field) if exc.field else ApiError(400, str(exc))


def _text(body: dict[str, Any], name: str) -> str | None:
    """An optional string field; 400 when it is there but not a string."""
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise ApiError(400, f"{name}: a string", field=name)
    return value


def _events(body: dict[str, Any]) -> list[str] | None:
    """The optional ``events`` list of event type names ([] for every event)."""
    value = body.get("events")
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ApiError(400, "events: a list of event type names ([] for every one)", field="events")
    return value


@bp.get("/webhooks")
@require_token("webhooks:read")
def list_webhooks() -> Response:
    """Every outbound webhook endpoint (never a secret)."""
    return jsonify({"webhooks": [endpoint_as_json(e) for e in list_endpoints(db())]})


@bp.post("/webhooks")
@require_token("webhooks:write")
def create_webhook() -> tuple[Response, int]:
    """Register an endpoint; the answer carries its signing secret, this once."""
    body = json_body()
    url = _text(body, "url")
    if not url:
        raise ApiError(400, "url: the endpoint's https:// URL is required", field="url")
    try:
        endpoint = register(
            db(),
            settings(),
            url,
            events=_events(body) or [],
            description=_text(body, "description") or "",
        )
    except WebhookError as exc:
        db().rollback()
        raise _refused(exc) from None
    data, secret = endpoint_as_json(endpoint), endpoint.secret
    db().commit()
    return jsonify({"webhook": data, "secret": secret}), 201


@bp.get("/webhooks/<int:endpoint_id>")
@require_token("webhooks:read")
def show_webhook(endpoint_id: int) -> Response:
    """One endpoint."""
    return jsonify({"webhook": endpoint_as_json(_endpoint(endpoint_id))})


@bp.patch("/webhooks/<int:endpoint_id>")
@require_token("webhooks:write")
def change_webhook(endpoint_id: int) -> Response:
    """Change the URL, events or description, or enable/disable (``enabled``: true/false)."""
    endpoint = _endpoint(endpoint_id)
    body = json_body()
    enabled = body.get("enabled")
    if enabled is not None and not isinstance(enabled, bool):
        raise ApiError(400, "enabled: true or false", field="enabled")
    try:
        update(
            db(),
            settings(),
            endpoint,
            url=_text(body, "url"),
            events=_events(body),
            description=_text(body, "description"),
            enabled=enabled,
        )
    except WebhookError as exc:
        db().rollback()
        raise _refused(exc) from None
    data = endpoint_as_json(endpoint)
    db().commit()
    return jsonify({"webhook": data})


@bp.delete("/webhooks/<int:endpoint_id>")
@require_token("webhooks:write")
def delete_webhook(endpoint_id: int) -> Response:
    """Remove an endpoint with its deliveries."""
    remove(db(), _endpoint(endpoint_id))
    db().commit()
    return jsonify({"id": endpoint_id, "deleted": True})


@bp.get("/webhooks/<int:endpoint_id>/deliveries")
@require_token("webhooks:read")
def list_deliveries(endpoint_id: int) -> Response:
    """An endpoint's latest deliveries, newest first, each with its attempts and their answers
    (``?limit=N``, 1..100, default 20)."""
    _endpoint(endpoint_id)
    raw = request.args.get("limit", "20")
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_DELIVERIES:
        raise ApiError(400, f"limit: a whole number from 1 to {MAX_DELIVERIES}", field="limit")
    rows = deliveries(db(), endpoint_id, limit=int(raw))
    return jsonify({"deliveries": [delivery_as_json(d) for d in rows]})


@bp.post("/webhooks/<int:endpoint_id>/test")
@require_token("webhooks:write")
def test_webhook(endpoint_id: int) -> tuple[Response, int]:
    """Queue a signed ``ping`` event to this endpoint; its delivery shows the answer."""
    endpoint = _endpoint(endpoint_id)
    try:
        delivery_id = send_test(db(), endpoint)
    except WebhookError as exc:
        raise ApiError(409, str(exc), field=exc.field) from None
    db().commit()
    return jsonify({"delivery_id": delivery_id, "status": "pending"}), 202
