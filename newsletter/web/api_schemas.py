"""The API's request and response schemas (pydantic v2): they validate what comes in, shape what
goes out, and are the schemas of the OpenAPI document (newsletter/web/openapi.py).

Request models are strict (a JSON string is never coerced into a number) and refuse unknown
fields, so a typo is a 400 that names it instead of an ignored field.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    RootModel,
    WithJsonSchema,
)

from newsletter.content.posts import AUTHOR_MAX, CATEGORIES_MAX, GUID_MAX, LINK_MAX
from newsletter.store.models import Frequency, IssueStatus, NewsletterKind


class Request(BaseModel):
    """A request body: strict types, no unknown fields."""

    model_config = ConfigDict(strict=True, extra="forbid")


class Query(BaseModel):
    """Query parameters: strings from the URL, converted (``limit=5`` is a number)."""

    model_config = ConfigDict(extra="ignore")


class Reply(BaseModel):
    """A response body."""


def _utc(value: datetime) -> datetime:
    """An aware time in UTC; out of range (e.g. 9999-12-31T23:59:59-14:00) is a ValueError."""
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("out of range") from None


Moment = Annotated[
    AwareDatetime,
    AfterValidator(_utc),
    Field(description="ISO 8601 with a UTC offset, e.g. 2030-01-01T08:00:00+01:00"),
]
# Replies keep the domain's ISO 8601 spelling (…+00:00), as the API always answered.
Timestamp = Annotated[
    datetime,
    PlainSerializer(lambda value: value.isoformat(), return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]
Cursor = Annotated[
    str,
    Field(
        max_length=100,
        description="Opaque: the `next` of the previous page. Leave out for the first page.",
    ),
]


# --- Problems (RFC 9457) ---------------------------------------------------------------------


class FieldError(Reply):
    """One invalid field: where (``loc``, path into the body or query) and what is wrong."""

    loc: list[str | int]
    msg: str


class Problem(Reply):
    """Every 4xx/5xx answer (``application/problem+json``, RFC 9457)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="about:blank: the status says what kind of problem it is")
    title: str = Field(description="The HTTP status phrase")
    status: int
    detail: str = Field(description="What went wrong and what to do, for a person")
    scope: str | None = Field(None, description="403: the scope the token lacks")
    field: str | None = Field(None, description="The (first) field at fault")
    errors: list[FieldError] | None = Field(None, description="Every invalid field")


# --- Issues ------------------------------------------------------------------------------------


class IssueOut(Reply):
    """One issue."""

    id: int
    newsletter_id: int
    newsletter: str | None
    kind: NewsletterKind
    status: IssueStatus
    reason: str
    frequency: Frequency | None
    subject: str
    preheader: str
    post_ids: list[int]
    window_start: Timestamp | None
    window_end: Timestamp | None
    schedule_id: int | None
    send_at: Timestamp | None
    local_send_time: str | None
    held: bool
    total: int
    created_at: Timestamp | None
    started_at: Timestamp | None
    finished_at: Timestamp | None


class ProgressOut(Reply):
    """How far a send has come: deliveries by status, recent rate, ETA."""

    issue_id: int
    status: IssueStatus
    reason: str
    total: int
    fanout_complete: bool
    queued: int
    waiting: int = Field(description="Queued, waiting for their reader's local time")
    next_due_at: Timestamp | None
    sending: int
    sent: int
    failed: int
    bounced: int
    skipped: int
    hard_bounces: int
    complaints: int
    rate_per_second: float
    eta_seconds: int | None
    done: bool


class IssueReply(Reply):
    """An issue with its live progress."""

    issue: IssueOut
    progress: ProgressOut


class ResendReply(IssueReply):
    """An issue after its failed deliveries were queued again."""

    requeued: int
    not_mailable: int


class IssuePage(Reply):
    """A page of issues, newest first."""

    items: list[IssueOut]
    next: str | None = Field(description="Pass as `after` for the next page; null on the last")


class IssueListQuery(Query):
    """Filters and page of GET /issues."""

    newsletter: str | None = Field(None, max_length=200, description="A newsletter's slug")
    status: IssueStatus | None = None
    limit: int = Field(50, ge=1, le=500)
    after: Cursor | None = None


class IssueCreate(Request):
    """A digest (planned from posts) or a campaign draft; ``send_at`` schedules it."""

    newsletter: str = Field(description="The newsletter's slug")
    kind: NewsletterKind | None = Field(None, description="Default: the newsletter's kind")
    send_at: Moment | None = None
    frequency: Frequency | None = None
    subject: str | None = Field(None, description="Required for a campaign")
    html: str | None = None
    text: str | None = None
    preheader: str | None = None


class IssueEdit(Request):
    """What may change before an issue goes out (html/text: campaigns only)."""

    subject: str | None = None
    preheader: str | None = None
    html: str | None = None
    text: str | None = None


class IssueSend(Request):
    """Send now, or at ``send_at`` when it is in the future. The body may be left out."""

    send_at: Moment | None = None
    # Send even though the pre-send check fails, for this reason (recorded on the issue). Only
    # an admin's token, or one made by ops on the command line, may.
    override_check: Annotated[str, Field(min_length=1, max_length=500)] | None = None


class TestSend(Request):
    """Where a test send goes."""

    to: Annotated[list[str], Field(min_length=1, max_length=20)] | str


class TestResult(Reply):
    """The SMTP answer for one test address."""

    to: str
    ok: bool
    answer: str


class TestReply(Reply):
    """One result per address."""

    results: list[TestResult]


# --- Schedules ---------------------------------------------------------------------------------


class ScheduleOut(Reply):
    """A schedule with its next send times."""

    id: int
    name: str
    newsletter: str | None
    cron: str
    timezone: str
    frequency: Frequency | None
    reader_local_time: bool
    prepare_minutes: int
    enabled: bool
    next_runs: list[Timestamp]
    last_fired_for: Timestamp | None
    last_issue_id: int | None
    created_at: Timestamp | None


class ScheduleReply(Reply):
    """One schedule."""

    schedule: ScheduleOut


class SchedulePage(Reply):
    """A page of schedules, oldest first."""

    items: list[ScheduleOut]
    next: str | None = Field(description="Pass as `after` for the next page; null on the last")


class PageQuery(Query):
    """A page of a list."""

    limit: int = Field(50, ge=1, le=500)
    after: Cursor | None = None


class ScheduleCreate(Request):
    """A periodic mailing of a newsletter."""

    newsletter: str = Field(description="The newsletter's slug")
    cron: str = Field(description="Five-field cron expression, e.g. 0 7 * * *")
    timezone: str = Field("UTC", description="IANA time zone the cron reads in")
    frequency: Frequency | None = None
    reader_local_time: bool = False
    prepare_minutes: int = 0
    name: str = ""
    enabled: bool = True


class ScheduleEdit(Request):
    """Fields to change; only ``frequency`` may be null (the newsletter's default)."""

    cron: str | None = None
    timezone: str | None = None
    frequency: Frequency | None = None
    name: str | None = None
    reader_local_time: bool | None = None
    enabled: bool | None = None
    prepare_minutes: int | None = None


# --- Preview -----------------------------------------------------------------------------------


class PreviewQuery(Query):
    """Which cohort of a digest to preview (default: the newsletter's)."""

    frequency: Frequency | None = None


class PreviewReply(Reply):
    """What the newsletter would send now."""

    newsletter: str
    frequency: Frequency | None
    subject: str
    html: str
    text: str
    url: str = Field(description="A signed link to the preview page")


# --- Posts -------------------------------------------------------------------------------------


class PostIn(Request):
    """One post pushed by the CMS (its ``guid`` is the key: pushing it again updates it)."""

    guid: Annotated[str, Field(max_length=GUID_MAX)]
    url: Annotated[str, Field(max_length=LINK_MAX, description="absolute http(s) URL")]
    title: Annotated[str, Field(max_length=10_000)]
    published_at: str = Field(description="ISO 8601 with a UTC offset")
    summary: Annotated[str, Field(max_length=100_000)] | None = None
    content_html: str | None = None
    author: Annotated[str, Field(max_length=AUTHOR_MAX)] | None = None
    categories: Annotated[list[str], Field(max_length=CATEGORIES_MAX)] | None = None
    image_url: Annotated[str, Field(max_length=LINK_MAX)] | None = None


class PostsPush(RootModel[PostIn | list[PostIn]]):
    """One post, or a list of 1 to 100."""


class PostStored(Reply):
    """What a push did to one post."""

    id: int
    guid: str
    status: Literal["created", "updated", "unchanged"]


class PushReply(Reply):
    """The outcome of a push, one entry a post."""

    posts: list[PostStored]
    created: int
    updated: int
    unchanged: int


class PostOut(Reply):
    """A live post."""

    id: int
    guid: str
    url: str
    title: str
    published_at: Timestamp
    summary: str
    content_html: str
    author: str
    categories: list[str]
    image_url: str
    feed_id: int | None
    updated_at: Timestamp | None


class PostPage(Reply):
    """A page of live posts, newest first."""

    items: list[PostOut]
    next: str | None = Field(description="Pass as `after` for the next page; null on the last")


class PostListQuery(Query):
    """Filters and page of GET /posts."""

    since: str | None = Field(None, description="Only posts published after (ISO 8601)")
    limit: int = Field(20, ge=1, le=100)
    after: Cursor | None = None


class RetractReply(Reply):
    """A retracted post."""

    id: int
    guid: str
    retracted: bool


# --- Inbound mail and provider webhooks ---------------------------------------------------------


class InboundQuery(Query):
    """The envelope recipient, when the mail service knows it (VERP)."""

    recipient: str = Field("", description="Envelope recipient (cut at 320 characters)")


class Outcome(Reply):
    """What one inbound message or provider event did."""

    result: str = Field(description="e.g. bounce, complaint, unsubscribe, unmatched, ignored")
    summary: str
    changed: bool
    subscriber_id: int | None
    issue_id: int | None


class ProviderEvents(RootModel[dict[str, Any]]):
    """The provider's own JSON object, verified by its signature."""


class EventsReply(Reply):
    """One outcome per event."""

    results: list[Outcome]


class SubscriptionReply(Reply):
    """What was done with an SNS subscription (or unsubscription) confirmation."""

    result: Literal["subscribed", "ignored"]
    topic: str


class ProviderReply(RootModel[EventsReply | SubscriptionReply]):
    """One outcome per event, or an SNS subscription's handling."""
