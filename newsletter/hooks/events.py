"""The events the site's systems can subscribe to, and emitting one into the outbox.

An event becomes one ``webhook_deliveries`` row per enabled endpoint that wants it, written in
the caller's transaction: the caller commits it with the change it reports, or rolls both back.
Nothing here sends or waits; the rows go to a worker after the commit (:mod:`.queue`). The
payload is Standard Webhooks' shape: ``{"type", "timestamp", "data"}``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from types import MappingProxyType
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from newsletter.hooks.queue import note_pending
from newsletter.store.db import utcnow
from newsletter.store.models import (
    FeedbackKind,
    Issue,
    Newsletter,
    Subscriber,
    WebhookDelivery,
    WebhookDeliveryStatus,
    WebhookEndpoint,
)

# The event types: a contract with the receivers (the API, the CLI and the README name them).
EVENT_TYPES: Mapping[str, str] = MappingProxyType(
    {
        "subscriber.created": "a new address signed up (pending until it confirms)",
        "subscriber.confirmed": "a reader confirmed lists by the link in the confirmation mail",
        "subscriber.unsubscribed": "a reader left one or more lists (or every list)",
        "delivery.bounced": "a mail to a reader bounced (kind hard or soft), on proven evidence",
        "complaint.received": "a reader marked a mail as spam (and left every list)",
        "issue.sent": "an issue finished sending, with its counts",
        "subscriber.erased": "a reader's data was erased here: erase it in your systems too "
        "(GDPR Art. 17(2)); carries their id only",
    }
)
ERASED = "subscriber.erased"
# Sent only by "test" (the API's and the CLI's), to the one endpoint being tried.
PING = "ping"


class UnknownEventType(ValueError):
    """An event type that is not in EVENT_TYPES; the message lists them."""


def check_event_types(names: Iterable[str]) -> list[str]:
    """The event types asked for, deduplicated in EVENT_TYPES order; UnknownEventType if any is
    not one."""
    wanted = set(names)
    unknown = sorted(wanted - set(EVENT_TYPES))
    if unknown:
        raise UnknownEventType(
            f"unknown event type {unknown[0]!r}; the event types are: {', '.join(EVENT_TYPES)}"
        )
    return [name for name in EVENT_TYPES if name in wanted]


def payload(event_type: str, data: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """The body of an event: its type, when it happened (ISO 8601, UTC) and its data."""
    stamp = now.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {"type": event_type, "timestamp": stamp, "data": dict(data)}


def emit(
    session: Session, event_type: str, data: Mapping[str, Any], now: datetime | None = None
) -> list[int]:
    """Add the event to the outbox of every enabled endpoint that wants it (caller commits)."""
    if event_type not in EVENT_TYPES:
        raise UnknownEventType(f"unknown event type {event_type!r}")
    endpoints = [
        e
        for e in session.scalars(select(WebhookEndpoint).where(WebhookEndpoint.enabled.is_(True)))
        if not e.event_types or event_type in e.event_types
    ]
    return deliver_to(session, endpoints, event_type, data, now or utcnow())


def deliver_to(
    session: Session,
    endpoints: Sequence[WebhookEndpoint],
    event_type: str,
    data: Mapping[str, Any],
    now: datetime,
) -> list[int]:
    """One pending delivery of the event per endpoint, due now; their ids."""
    body = payload(event_type, data, now)
    about = data.get("subscriber_id")
    rows = [
        WebhookDelivery(
            endpoint_id=endpoint.id,
            message_id=f"msg_{uuid.uuid4().hex}",
            event_type=event_type,
            payload=body,
            # An erasure of the reader deletes the event with the address it carries; the
            # "erased" event itself carries none and must still go.
            subscriber_id=about if isinstance(about, int) and event_type != ERASED else None,
            status=WebhookDeliveryStatus.PENDING,
            next_attempt_at=now,
            created_at=now,
        )
        for endpoint in endpoints
    ]
    if not rows:
        return []
    session.add_all(rows)
    session.flush()
    ids = [row.id for row in rows]
    note_pending(session, ids)
    return ids


# --- the events, from the places that cause them -------------------------------------------------


def subscriber_created(session: Session, subscriber: Subscriber, slugs: Sequence[str]) -> None:
    """``subscriber.created``: a new address signed up for these lists (not confirmed yet)."""
    emit(session, "subscriber.created", _subscriber(subscriber, list(slugs)))


def subscriber_confirmed(
    session: Session, subscriber: Subscriber, newsletter_ids: Sequence[int]
) -> None:
    """``subscriber.confirmed``: the reader confirmed these lists."""
    emit(session, "subscriber.confirmed", _subscriber(subscriber, _slugs(session, newsletter_ids)))


def subscriber_unsubscribed(
    session: Session, subscriber: Subscriber, newsletter_ids: Sequence[int]
) -> None:
    """``subscriber.unsubscribed``: the reader left these lists (status says if all of them)."""
    emit(
        session,
        "subscriber.unsubscribed",
        _subscriber(subscriber, _slugs(session, newsletter_ids)),
    )


def subscriber_erased(session: Session, subscriber_id: int) -> None:
    """``subscriber.erased``: forget this reader too; their undelivered events are gone."""
    # The reader's earlier events hold their address: those not yet delivered are dropped with
    # the rest of their data, and the ones delivered stop being kept here.
    session.execute(
        delete(WebhookDelivery).where(WebhookDelivery.subscriber_id == subscriber_id),
        execution_options={"synchronize_session": False},
    )
    emit(session, ERASED, {"subscriber_id": subscriber_id})


def feedback_recorded(
    session: Session, subscriber_id: int, issue_id: int | None, kind: FeedbackKind, status: str
) -> None:
    """``delivery.bounced`` (hard or soft) or ``complaint.received``, once evidence proved it."""
    subscriber = session.get(Subscriber, subscriber_id)
    data: dict[str, Any] = {
        "issue_id": issue_id,
        "subscriber_id": subscriber_id,
        "email": subscriber.email if subscriber is not None else "",
    }
    if kind == FeedbackKind.COMPLAINT:
        emit(session, "complaint.received", data)
        return
    data["kind"] = "hard" if kind == FeedbackKind.HARD_BOUNCE else "soft"
    data["status"] = status  # the enhanced status code, e.g. "5.1.1" ("" when none was given)
    emit(session, "delivery.bounced", data)


def issue_sent(session: Session, issue_id: int, counts: Mapping[str, int]) -> None:
    """``issue.sent``: an issue finished sending; ``counts`` are its deliveries by status."""
    issue = session.get(Issue, issue_id)
    if issue is None:
        return
    newsletter = session.get(Newsletter, issue.newsletter_id)
    emit(
        session,
        "issue.sent",
        {
            "issue_id": issue.id,
            "newsletter": newsletter.slug if newsletter is not None else "",
            "kind": issue.kind.value,
            "subject": issue.subject,
            "counts": {name: int(count) for name, count in sorted(counts.items())},
        },
    )


def _subscriber(subscriber: Subscriber, slugs: list[str]) -> dict[str, Any]:
    """What every subscriber.* event says about the reader."""
    return {
        "subscriber_id": subscriber.id,
        "email": subscriber.email,
        "status": subscriber.status.value,
        "newsletters": slugs,
    }


def _slugs(session: Session, newsletter_ids: Sequence[int]) -> list[str]:
    """The slugs of these lists, in list order."""
    if not newsletter_ids:
        return []
    return list(
        session.scalars(
            select(Newsletter.slug)
            .where(Newsletter.id.in_(list(newsletter_ids)))
            .order_by(Newsletter.position, Newsletter.id)
        )
    )
