"""Webhook endpoints: registering, changing and removing them, and what the API shows of them.

A URL is refused early when it is plainly no public address (``127.0.0.1``, ``localhost``, a
name that resolves to the LAN) unless ``NEWSLETTER_WEBHOOK_ALLOW_PRIVATE_NETWORKS`` is on. That
is only a courtesy: DNS can change after registration, so every delivery connects through
:mod:`newsletter.content.public_http`, which vets the address it connects to.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.content.public_http import BlockedAddress, check_host
from newsletter.hooks.events import PING, check_event_types, deliver_to
from newsletter.hooks.signing import new_secret
from newsletter.settings import Settings
from newsletter.store.db import utcnow
from newsletter.store.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint, as_dict

MAX_URL_LENGTH = 2000
MAX_DESCRIPTION_LENGTH = 500


class WebhookError(ValueError):
    """A refused registration or change; the message says what to do instead."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


class EndpointNotFound(LookupError):
    """No endpoint has that id."""


def check_url(settings: Settings, url: str) -> str:
    """The URL, stripped, if it can be an endpoint; WebhookError saying why not."""
    url = url.strip()
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise WebhookError("the URL is not a valid http(s) URL", "url") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookError("the URL must start with https:// (or http://) and name a host", "url")
    if len(url) > MAX_URL_LENGTH:
        raise WebhookError(f"the URL is longer than {MAX_URL_LENGTH} characters", "url")
    if parts.username is not None or parts.password is not None:
        # It would be shown in every listing; the signature is what proves who is calling.
        raise WebhookError(
            "put no user or password in the URL; receivers verify the signature instead", "url"
        )
    if any(ord(c) < 33 or ord(c) == 127 for c in url):
        raise WebhookError("the URL contains spaces or control characters", "url")
    if not settings.webhook_allow_private_networks:
        _refuse_private(parts.hostname, port or (443 if parts.scheme == "https" else 80))
    return url


def _refuse_private(host: str, port: int) -> None:
    """WebhookError when the host is, or resolves to, a non-public address."""
    if host.rstrip(".").lower() == "localhost" or host.lower().endswith(".localhost"):
        raise WebhookError(_private_message(f"{host} is this machine"), "url")
    try:
        check_host(host, port)
    except BlockedAddress as exc:
        raise WebhookError(_private_message(str(exc)), "url") from None
    except (socket.gaierror, UnicodeError):
        # Not resolvable now (not published yet, or DNS is away): each delivery checks again.
        if _is_literal(host):
            raise WebhookError("the URL's host is not a valid address", "url") from None


def _is_literal(host: str) -> bool:
    """True when ``host`` is an IP address literal."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _private_message(problem: str) -> str:
    """The refusal of a private address, with the setting that would allow it."""
    return (
        f"webhooks go to public addresses only: {problem}. "
        "Set NEWSLETTER_WEBHOOK_ALLOW_PRIVATE_NETWORKS=true to allow endpoints on this network."
    )


def _description(text: str) -> str:
    """A description within its length."""
    text = text.strip()
    if len(text) > MAX_DESCRIPTION_LENGTH:
        raise WebhookError(
            f"the description is longer than {MAX_DESCRIPTION_LENGTH} characters", "description"
        )
    return text


def _event_types(names: Iterable[str]) -> list[str]:
    """Event types checked against the contract (empty: every event)."""
    try:
        return check_event_types(names)
    except ValueError as exc:
        raise WebhookError(str(exc), "events") from None


def register(
    session: Session,
    settings: Settings,
    url: str,
    events: Sequence[str] = (),
    description: str = "",
) -> WebhookEndpoint:
    """Add an enabled endpoint with a new secret (shown to the caller once, from the row)."""
    endpoint = WebhookEndpoint(
        url=check_url(settings, url),
        description=_description(description),
        event_types=_event_types(events),
        secret=new_secret(),
        enabled=True,
    )
    session.add(endpoint)
    session.flush()
    return endpoint


def get_endpoint(session: Session, endpoint_id: int) -> WebhookEndpoint:
    """The endpoint with this id, or EndpointNotFound."""
    endpoint = session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None:
        raise EndpointNotFound(f"no webhook endpoint with id {endpoint_id}")
    return endpoint


def list_endpoints(session: Session) -> list[WebhookEndpoint]:
    """Every endpoint, oldest first."""
    return list(session.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.id)))


def update(
    session: Session,
    settings: Settings,
    endpoint: WebhookEndpoint,
    *,
    url: str | None = None,
    events: Sequence[str] | None = None,
    description: str | None = None,
    enabled: bool | None = None,
) -> WebhookEndpoint:
    """Change what is given; everything is checked before anything changes."""
    new_url = check_url(settings, url) if url is not None else None
    new_events = _event_types(events) if events is not None else None
    new_description = _description(description) if description is not None else None
    if new_url is not None:
        endpoint.url = new_url
    if new_events is not None:
        endpoint.event_types = new_events
    if new_description is not None:
        endpoint.description = new_description
    if enabled is True and not endpoint.enabled:
        enable(endpoint)
    elif enabled is False and endpoint.enabled:
        disable(endpoint, "disabled by hand")
    session.flush()
    return endpoint


def enable(endpoint: WebhookEndpoint) -> None:
    """Enable an endpoint afresh: its failure counts start again (pending deliveries resume)."""
    endpoint.enabled = True
    endpoint.disabled_reason = ""
    endpoint.disabled_at = None
    endpoint.consecutive_failures = 0
    endpoint.failing_since = None


def disable(endpoint: WebhookEndpoint, reason: str, now: datetime | None = None) -> None:
    """Disable an endpoint, saying why; its pending deliveries wait until it is enabled."""
    endpoint.enabled = False
    endpoint.disabled_reason = reason[:1000]
    endpoint.disabled_at = now or utcnow()


def remove(session: Session, endpoint: WebhookEndpoint) -> None:
    """Delete an endpoint with its deliveries and their attempts."""
    session.delete(endpoint)
    session.flush()


def send_test(session: Session, endpoint: WebhookEndpoint) -> int:
    """Queue a signed ``ping`` event to this endpoint alone; the delivery's id."""
    if not endpoint.enabled:
        raise WebhookError(
            f"webhook endpoint {endpoint.id} is disabled ({endpoint.disabled_reason}); "
            "enable it first",
            "enabled",
        )
    now = utcnow()
    data = {"endpoint_id": endpoint.id, "message": "a test event; nothing happened"}
    (delivery_id,) = deliver_to(session, [endpoint], PING, data, now)
    return delivery_id


def deliveries(session: Session, endpoint_id: int, limit: int = 50) -> list[WebhookDelivery]:
    """An endpoint's latest deliveries, newest first."""
    return list(
        session.scalars(
            select(WebhookDelivery)
            .where(WebhookDelivery.endpoint_id == endpoint_id)
            .order_by(WebhookDelivery.id.desc())
            .limit(limit)
        )
    )


def endpoint_as_json(endpoint: WebhookEndpoint) -> dict[str, Any]:
    """An endpoint for the API, without its secret."""
    data = as_dict(
        endpoint,
        "id",
        "url",
        "description",
        "enabled",
        "disabled_reason",
        "disabled_at",
        "consecutive_failures",
        "failing_since",
        "last_success_at",
        "created_at",
    )
    data["events"] = list(endpoint.event_types)
    data["all_events"] = not endpoint.event_types  # then every event type, also later ones
    return data


def delivery_as_json(delivery: WebhookDelivery) -> dict[str, Any]:
    """A delivery for the API: what was sent, where it stands, and every attempt's answer."""
    data = as_dict(
        delivery,
        "id",
        "message_id",
        "event_type",
        "status",
        "attempts",
        "next_attempt_at",
        "last_status_code",
        "last_error",
        "created_at",
        "finished_at",
    )
    data["payload"] = delivery.payload
    data["attempt_log"] = [attempt_as_json(a) for a in delivery.attempt_rows]
    return data


def attempt_as_json(attempt: WebhookAttempt) -> dict[str, Any]:
    """One attempt: when, how long, the status code and body of the answer, or the error."""
    return as_dict(attempt, "attempted_at", "duration_ms", "status_code", "response_body", "error")
