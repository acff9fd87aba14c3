"""The schemas of /api/v1/webhooks (outbound webhook endpoints, their deliveries and attempts).

Beside newsletter/web/api_schemas.py, which holds the shared types and the other resources.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from newsletter.web.api_schemas import Cursor, Query, Reply, Request, Timestamp

EventName = Annotated[str, Field(min_length=1, max_length=100)]
Url = Annotated[str, Field(min_length=1, max_length=2000, description="An https:// URL")]


class WebhookCreate(Request):
    """An endpoint to register; without ``events`` (or with []) it gets every event type."""

    url: Url
    events: Annotated[list[EventName], Field(max_length=50)] = []
    description: Annotated[str, Field(max_length=500)] = ""


class WebhookEdit(Request):
    """What to change; ``enabled: true`` re-enables an endpoint that was disabled."""

    url: Url | None = None
    events: Annotated[list[EventName], Field(max_length=50)] | None = None
    description: Annotated[str, Field(max_length=500)] | None = None
    enabled: bool | None = None


class WebhookOut(Reply):
    """An endpoint, never its secret."""

    id: int
    url: str
    description: str
    enabled: bool
    disabled_reason: str
    disabled_at: Timestamp | None
    consecutive_failures: int
    failing_since: Timestamp | None
    last_success_at: Timestamp | None
    created_at: Timestamp
    events: list[str]
    all_events: bool = Field(description="True: every event type, also ones added later")


class WebhookReply(Reply):
    """One endpoint."""

    webhook: WebhookOut


class WebhookCreated(Reply):
    """The endpoint registered, and its signing secret, shown this once."""

    webhook: WebhookOut
    secret: str = Field(description="`whsec_…`: verify each delivery's signature with it")


class WebhookPage(Reply):
    """A page of endpoints, oldest first."""

    items: list[WebhookOut]
    next: str | None = Field(description="Pass as `after` for the next page; null on the last")


class WebhookDeleted(Reply):
    """The endpoint removed, with its deliveries."""

    id: int
    deleted: bool


class AttemptOut(Reply):
    """One attempt to deliver: when, how long, and the receiver's answer or the error."""

    attempted_at: Timestamp
    duration_ms: int | None
    status_code: int | None
    response_body: str = Field(description="The first 1 kB of the answer")
    error: str


class DeliveryOut(Reply):
    """One event sent to one endpoint: what was sent, where it stands, every attempt."""

    id: int
    message_id: str = Field(description="The `webhook-id` header: the same on every retry")
    event_type: str
    status: str
    attempts: int
    next_attempt_at: Timestamp | None
    last_status_code: int | None
    last_error: str
    created_at: Timestamp
    finished_at: Timestamp | None
    payload: dict[str, Any]
    attempt_log: list[AttemptOut]


class DeliveryPage(Reply):
    """A page of an endpoint's deliveries, newest first."""

    items: list[DeliveryOut]
    next: str | None = Field(description="Pass as `after` for the next page; null on the last")


class DeliveryQuery(Query):
    """A page of deliveries."""

    limit: int = Field(20, ge=1, le=100)
    after: Cursor | None = None


class TestQueued(Reply):
    """The ``ping`` queued to the endpoint; its delivery shows the answer."""

    delivery_id: int
    status: str
