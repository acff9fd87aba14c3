"""Outbound webhook endpoints: /api/v1/webhooks and /api/v1/webhooks/<id>[/deliveries|/test].

(The relays' inbound feedback webhooks, /api/v1/webhooks/<provider>, are web/api_webhooks.py.)
"""

from __future__ import annotations

from typing import Any

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
from newsletter.web.api import ApiError, bp, require_token
from newsletter.web.api_paging import by_id
from newsletter.web.api_schemas import PageQuery
from newsletter.web.api_schemas_hooks import (
    DeliveryPage,
    DeliveryQuery,
    TestQueued,
    WebhookCreate,
    WebhookCreated,
    WebhookDeleted,
    WebhookEdit,
    WebhookPage,
    WebhookReply,
)
from newsletter.web.openapi import operation

WEBHOOKS = "webhooks"


def _endpoint(endpoint_id: int) -> WebhookEndpoint:
    """The endpoint with this id, or a 404."""
    try:
        return get_endpoint(db(), endpoint_id)
    except EndpointNotFound as exc:
        raise ApiError(404, str(exc)) from None


def _refused(exc: WebhookError) -> ApiError:
    """A refused registration or change as a 400 naming the field."""
    return ApiError(400, str(exc), field=exc.field) if exc.field else ApiError(400, str(exc))


@bp.get("/webhooks")
@require_token("webhooks:read")
@operation(tag=WEBHOOKS, query=PageQuery, responses={200: WebhookPage})
def list_webhooks(query: PageQuery) -> dict[str, Any]:
    """Outbound webhook endpoints, oldest first (never a secret); paged by ``after``."""
    shown, cursor = by_id(
        query.after,
        query.limit,
        lambda after, limit: list_endpoints(db(), limit=limit, after_id=after),
        lambda endpoint: endpoint.id,
    )
    return {"items": [endpoint_as_json(e) for e in shown], "next": cursor}


@bp.post("/webhooks")
@require_token("webhooks:write")
@operation(
    tag=WEBHOOKS,
    body=WebhookCreate,
    responses={201: WebhookCreated},
    creates=("endpoint_id", "/webhook/id"),
)
def create_webhook(body: WebhookCreate) -> tuple[dict[str, Any], int]:
    """Register an endpoint; the answer carries its signing secret, this once.

    Its URL must reach a public address unless NEWSLETTER_WEBHOOK_ALLOW_PRIVATE_NETWORKS is on.
    """
    try:
        endpoint = register(
            db(), settings(), body.url, events=body.events, description=body.description
        )
    except WebhookError as exc:
        db().rollback()
        raise _refused(exc) from None
    data, secret = endpoint_as_json(endpoint), endpoint.secret
    db().commit()
    return {"webhook": data, "secret": secret}, 201


@bp.get("/webhooks/<int:endpoint_id>")
@require_token("webhooks:read")
@operation(tag=WEBHOOKS, responses={200: WebhookReply}, problems=(404,))
def show_webhook(endpoint_id: int) -> dict[str, Any]:
    """One endpoint."""
    return {"webhook": endpoint_as_json(_endpoint(endpoint_id))}


@bp.patch("/webhooks/<int:endpoint_id>")
@require_token("webhooks:write")
@operation(tag=WEBHOOKS, body=WebhookEdit, responses={200: WebhookReply}, problems=(404,))
def change_webhook(endpoint_id: int, body: WebhookEdit) -> dict[str, Any]:
    """Change the URL, events or description, or enable or disable it (``enabled``)."""
    endpoint = _endpoint(endpoint_id)
    try:
        update(
            db(),
            settings(),
            endpoint,
            url=body.url,
            events=body.events,
            description=body.description,
            enabled=body.enabled,
        )
    except WebhookError as exc:
        db().rollback()
        raise _refused(exc) from None
    data = endpoint_as_json(endpoint)
    db().commit()
    return {"webhook": data}


@bp.delete("/webhooks/<int:endpoint_id>")
@require_token("webhooks:write")
@operation(tag=WEBHOOKS, responses={200: WebhookDeleted}, problems=(404,))
def delete_webhook(endpoint_id: int) -> dict[str, Any]:
    """Remove an endpoint with its deliveries."""
    remove(db(), _endpoint(endpoint_id))
    db().commit()
    return {"id": endpoint_id, "deleted": True}


@bp.get("/webhooks/<int:endpoint_id>/deliveries")
@require_token("webhooks:read")
@operation(tag=WEBHOOKS, query=DeliveryQuery, responses={200: DeliveryPage}, problems=(404,))
def list_deliveries(endpoint_id: int, query: DeliveryQuery) -> dict[str, Any]:
    """An endpoint's deliveries, newest first, each with its attempts and their answers."""
    _endpoint(endpoint_id)
    shown, cursor = by_id(
        query.after,
        query.limit,
        lambda after, limit: deliveries(db(), endpoint_id, limit=limit, before_id=after),
        lambda delivery: delivery.id,
    )
    return {"items": [delivery_as_json(d) for d in shown], "next": cursor}


@bp.post("/webhooks/<int:endpoint_id>/test")
@require_token("webhooks:write")
@operation(tag=WEBHOOKS, responses={202: TestQueued}, problems=(404, 409))
def test_webhook(endpoint_id: int) -> tuple[dict[str, Any], int]:
    """Queue a signed ``ping`` event to this endpoint; its delivery shows the answer."""
    endpoint = _endpoint(endpoint_id)
    try:
        delivery_id = send_test(db(), endpoint)
    except WebhookError as exc:
        raise ApiError(409, str(exc), field=exc.field) from None
    db().commit()
    return {"delivery_id": delivery_id, "status": "pending"}, 202
