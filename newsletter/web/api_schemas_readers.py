"""The API's schemas of readers, newsletters and the suppression list (see api_schemas.py for
the base models and the rules they follow)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from newsletter.readers.directory import MAX_PAGE, SEARCH_MAX
from newsletter.readers.importing import SOURCE_MAX
from newsletter.readers.subscriptions import NAME_MAX
from newsletter.store.models import (
    DeliveryStatus,
    Frequency,
    NewsletterKind,
    SubscriberStatus,
    SubscriptionStatus,
)
from newsletter.web.api_schemas import Cursor, Query, Reply, Request, Timestamp


def _no_nul(value: str) -> str:
    """Refuse NUL characters: no column may hold one (PostgreSQL refuses them outright)."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


Text = Annotated[str, AfterValidator(_no_nul)]
Slug = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_no_nul)]
Address = Annotated[str, Field(min_length=1, max_length=320), AfterValidator(_no_nul)]
Topics = Annotated[list[Annotated[Text, Field(max_length=200)]], Field(max_length=100)]


# --- Subscribers -------------------------------------------------------------------------------


class SubscriberListQuery(Query):
    """Filters and page of GET /subscribers."""

    newsletter: Slug | None = Field(None, description="Only readers of this list (its slug)")
    status: SubscriberStatus | None = Field(
        None,
        description="The reader's status; with `newsletter`, their status on that list "
        "(pending, active or unsubscribed)",
    )
    q: Annotated[Text, Field(max_length=SEARCH_MAX)] = Field(
        "", description="The start of the address or the name, any case"
    )
    counts: bool = Field(
        False,
        description="Also count every reader the filters match, by status (one more query)",
    )
    limit: int = Field(50, ge=1, le=MAX_PAGE)
    after: Cursor | None = None


class SubscriberRow(Reply):
    """One reader in a list; ``newsletters`` as ``slug:status``."""

    id: int
    email: str
    name: str
    status: SubscriberStatus
    created_at: Timestamp
    confirmed_at: Timestamp | None
    newsletters: list[str]


class SubscriberCounts(Reply):
    """How many readers match, and by status with the other filters kept: by the status on
    the list with `newsletter`, else by the reader's status."""

    total: int
    by_status: dict[str, int]


class SubscriberPage(Reply):
    """A page of readers in id order."""

    items: list[SubscriberRow]
    next: str | None = Field(description="Pass as `after` for the next page; null on the last")
    counts: SubscriberCounts | None = Field(description="With `counts=true`, else null")


class ReaderOut(Reply):
    """The reader."""

    id: int
    email: str
    name: str
    status: SubscriberStatus
    timezone: str
    topics: list[str]
    created_at: Timestamp
    confirmed_at: Timestamp | None
    updated_at: Timestamp | None


class SubscriptionOut(Reply):
    """The reader on one list."""

    newsletter: str
    newsletter_name: str
    status: SubscriptionStatus
    frequency: Frequency
    paused_until: Timestamp | None
    created_at: Timestamp
    confirmed_at: Timestamp | None
    unsubscribed_at: Timestamp | None


class ConsentOut(Reply):
    """A consent record: what was agreed to, when and where. Personal data: the IP addresses
    and browsers of the signup and of the confirmation are included (scope subscribers:read)."""

    id: int
    newsletter_slugs: list[str]
    consent_text_version: str
    consent_text: str
    source: str
    signup_at: Timestamp
    signup_ip: str
    signup_user_agent: str
    confirmed_at: Timestamp | None
    confirm_ip: str
    confirm_user_agent: str


class ReaderDelivery(Reply):
    """One of the reader's latest mails, with the SMTP answer."""

    issue_id: int
    subject: str
    status: str
    attempts: int
    smtp_code: int | None
    smtp_response: str
    created_at: Timestamp
    sent_at: Timestamp | None


class ReaderEvent(Reply):
    """A bounce or complaint reported about a mail to the reader."""

    issue_id: int | None
    kind: str
    status: str
    detail: str
    created_at: Timestamp


class SuppressionNote(Reply):
    """Why the reader's address is on the do-not-mail list."""

    reason: str
    detail: str
    created_at: Timestamp


class SubscriberRecord(Reply):
    """A reader's record: their lists, consent records (with IP and browser), latest 20 mails
    and latest 50 bounce or complaint reports, and their suppression entry, if any."""

    reader: ReaderOut
    subscriptions: list[SubscriptionOut]
    consent_records: list[ConsentOut]
    deliveries: list[ReaderDelivery]
    feedback_events: list[ReaderEvent]
    suppression: SuppressionNote | None


class SubscriberCreated(SubscriberRecord):
    """The new reader's record, and whether a confirmation mail was queued."""

    confirmation_mail: bool = Field(description="True when a double opt-in mail was queued")


class RecordedConsent(Request):
    """Consent the reader gave elsewhere, vouched for by the caller."""

    source: Annotated[Text, Field(min_length=1, max_length=SOURCE_MAX)] = Field(
        description="Where and how the reader agreed, e.g. 'paper form at the 2024 fair'"
    )


class SubscriberCreate(Request):
    """A reader for one or more lists: with ``confirm: true`` they get a double opt-in mail and
    join when they click it; with ``consent`` they join at once on consent recorded elsewhere.
    Exactly one of the two."""

    email: Address
    name: Annotated[Text, Field(max_length=NAME_MAX)] = ""
    newsletters: Annotated[list[Slug], Field(min_length=1, max_length=50)] = Field(
        description="The lists' slugs"
    )
    confirm: Literal[True] | None = Field(None, description="Send a double opt-in mail")
    consent: RecordedConsent | None = None
    topics: Topics = Field(default_factory=list)
    frequency: Frequency | None = Field(None, description="For digest lists; default: theirs")
    timezone: Annotated[Text, Field(max_length=64)] = Field("", description="IANA zone")


class SubscriberEdit(Request):
    """Fields to change; lists are changed by the reader (or unsubscribe)."""

    name: Annotated[Text, Field(max_length=NAME_MAX)] | None = None
    timezone: Annotated[Text, Field(max_length=64)] | None = None
    topics: Topics | None = None
    frequencies: Annotated[dict[Slug, Frequency], Field(max_length=50)] | None = Field(
        None, description="Digest frequency per list the reader is on, by slug"
    )


class UnsubscribeRequest(Request):
    """From one list, or (without ``newsletter``) from every list. The body may be left out."""

    newsletter: Slug | None = None


class UnsubscribeReply(Reply):
    """The lists the reader left now (empty if they were on none of them)."""

    left: list[str]
    subscriber: SubscriberRecord


# --- Suppressions ------------------------------------------------------------------------------


class SuppressionOut(Reply):
    """An entry of the do-not-mail list: the address's hash (we may no longer hold the
    address), why and when."""

    id: int
    email_hash: str = Field(description="SHA-256 of the normalised address, hex")
    reason: str = Field(description="e.g. hard-bounce, complaint, editor, erased")
    detail: str
    created_at: Timestamp


class SuppressionPage(Reply):
    """A page of the do-not-mail list, newest first."""

    items: list[SuppressionOut]
    next: str | None = Field(description="Pass as `after` for the next page; null on the last")


class SuppressionCreate(Request):
    """An address never to be mailed again."""

    email: Address
    detail: Annotated[Text, Field(max_length=1000)] = Field("", description="Why (kept)")


class SuppressionReply(Reply):
    """The entry, and whether the address was a reader's (now unsubscribed everywhere)."""

    suppression: SuppressionOut
    subscriber_id: int | None


# --- Newsletters -------------------------------------------------------------------------------


Categories = Annotated[list[Annotated[Text, Field(max_length=200)]], Field(max_length=100)]


class NewsletterOut(Reply):
    """A newsletter (a list readers choose)."""

    slug: str
    name: str
    description: str
    kind: NewsletterKind
    default_frequency: Frequency
    categories: list[str] = Field(description="Post categories of its digests; empty: all")
    public: bool = Field(description="Offered on the signup form")
    position: int
    created_at: Timestamp
    active_subscribers: int = Field(description="Confirmed readers active on it")


class NewsletterReply(Reply):
    """One newsletter."""

    newsletter: NewsletterOut


class NewsletterPage(Reply):
    """A page of newsletters in display order."""

    items: list[NewsletterOut]
    next: str | None = Field(description="Pass as `after` for the next page; null on the last")


class NewsletterCreate(Request):
    """A new list."""

    slug: Slug = Field(description="Lowercase letters, digits and single hyphens")
    name: Annotated[Text, Field(min_length=1, max_length=200)]
    description: Annotated[Text, Field(max_length=2000)] = ""
    kind: NewsletterKind = NewsletterKind.DIGEST
    default_frequency: Frequency = Frequency.DAILY
    categories: Categories = Field(default_factory=list)
    public: bool = True


class NewsletterEdit(Request):
    """Fields to change (the slug and the kind stay: issues and links name them)."""

    name: Annotated[Text, Field(min_length=1, max_length=200)] | None = None
    description: Annotated[Text, Field(max_length=2000)] | None = None
    default_frequency: Frequency | None = None
    categories: Categories | None = None
    public: bool | None = None


# --- An issue's deliveries ---------------------------------------------------------------------


class DeliveryListQuery(Query):
    """Filter and page of GET /issues/<id>/deliveries."""

    status: DeliveryStatus | None = None
    limit: int = Field(50, ge=1, le=MAX_PAGE)
    after: Cursor | None = None


class DeliveryOut(Reply):
    """The issue's mail to one reader: its fate and the receiving server's answer."""

    subscriber_id: int
    email: str
    status: DeliveryStatus
    attempts: int
    smtp_code: int | None
    smtp_response: str = Field(description="The SMTP answer (it may quote the address)")
    due_at: Timestamp | None = Field(description="When it is due, for a reader-local-time send")
    created_at: Timestamp
    sent_at: Timestamp | None


class DeliveryPage(Reply):
    """A page of an issue's deliveries in reader-id order."""

    items: list[DeliveryOut]
    next: str | None = Field(description="Pass as `after` for the next page; null on the last")
