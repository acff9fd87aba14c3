"""The tables. Unique constraints here are what make retries and duplicate tasks harmless."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Computed,
    Enum,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from newsletter.store.db import Base, UTCDateTime, utcnow

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets 64-bit ids.
BigId = BigInteger().with_variant(Integer(), "sqlite")
# The largest id either database can hold: ids typed into a URL or a command are checked against
# it, since a larger one makes the driver raise instead of finding nothing.
MAX_ID = 2**63 - 1


def _enum(cls: type[enum.Enum], name: str) -> Enum:
    """A portable enum column stored as its string values (no native PG enum to migrate)."""
    return Enum(
        cls,
        name=name,
        native_enum=False,
        length=20,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


class SubscriberStatus(enum.StrEnum):
    """Where a reader stands overall."""

    PENDING = "pending"  # signed up, not confirmed yet
    ACTIVE = "active"  # confirmed
    UNSUBSCRIBED = "unsubscribed"  # left every list
    BOUNCED = "bounced"  # hard bounce; never mailed again


class SubscriptionStatus(enum.StrEnum):
    """Where a reader stands on one newsletter."""

    PENDING = "pending"
    ACTIVE = "active"
    UNSUBSCRIBED = "unsubscribed"


class Frequency(enum.StrEnum):
    """How often a reader wants a digest newsletter."""

    DAILY = "daily"
    WEEKLY = "weekly"


class NewsletterKind(enum.StrEnum):
    """Digests are built from posts; campaigns are written by an editor."""

    DIGEST = "digest"
    CAMPAIGN = "campaign"


class Newsletter(Base):
    """A list readers can choose, e.g. "Daily digest" or "Offers"."""

    __tablename__ = "newsletters"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    kind: Mapped[NewsletterKind] = mapped_column(
        _enum(NewsletterKind, "newsletter_kind"), default=NewsletterKind.DIGEST
    )
    default_frequency: Mapped[Frequency] = mapped_column(
        _enum(Frequency, "frequency"), default=Frequency.DAILY
    )
    # Only posts in one of these categories go into this newsletter's digests; empty means all.
    categories: Mapped[list[str]] = mapped_column(JSON, default=list)
    subject_template: Mapped[str] = mapped_column(Text, default="")
    is_public: Mapped[bool] = mapped_column(Boolean, default=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Subscriber(Base):
    """A reader's address. ``email_key`` is the case-folded address that must be unique."""

    __tablename__ = "subscribers"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    email: Mapped[str] = mapped_column(String(320))
    email_key: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    # lower(name), computed by the database on every write: what a name search matches on (a
    # stored column rather than an expression index, which the migration tooling cannot see).
    name_key: Mapped[str] = mapped_column(String(200), Computed("lower(name)", persisted=True))
    status: Mapped[SubscriberStatus] = mapped_column(
        _enum(SubscriberStatus, "subscriber_status"), default=SubscriberStatus.PENDING
    )
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    # Categories the reader wants in digests; empty means every category.
    topics: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Bumped to revoke every preferences/unsubscribe link already mailed (rarely needed).
    token_version: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    subscriptions: Mapped[list[Subscription]] = relationship(
        back_populates="subscriber", cascade="all, delete-orphan"
    )

    __table_args__ = (
        Index("ix_subscribers_status_id", "status", "id"),
        # The console's search is a case-insensitive prefix match: on PostgreSQL a LIKE 'abc%'
        # uses a b-tree only with the pattern operator class (the unique index on email_key
        # follows the database collation), so these two make a search at a million readers a
        # range scan. The name is matched on name_key, lower(name) kept by the database.
        Index(
            "ix_subscribers_email_key_prefix",
            "email_key",
            postgresql_ops={"email_key": "varchar_pattern_ops"},
        ),
        Index(
            "ix_subscribers_name_key_prefix",
            "name_key",
            postgresql_ops={"name_key": "varchar_pattern_ops"},
        ),
    )


class Subscription(Base):
    """A reader on one newsletter, with its own status and frequency."""

    __tablename__ = "subscriptions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"))
    newsletter_id: Mapped[int] = mapped_column(ForeignKey("newsletters.id", ondelete="CASCADE"))
    status: Mapped[SubscriptionStatus] = mapped_column(
        _enum(SubscriptionStatus, "subscription_status"), default=SubscriptionStatus.PENDING
    )
    frequency: Mapped[Frequency] = mapped_column(
        _enum(Frequency, "frequency"), default=Frequency.DAILY
    )
    paused_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    unsubscribed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    subscriber: Mapped[Subscriber] = relationship(back_populates="subscriptions")
    newsletter: Mapped[Newsletter] = relationship()

    __table_args__ = (
        UniqueConstraint("subscriber_id", "newsletter_id"),
        Index("ix_subscriptions_newsletter_status", "newsletter_id", "status", "subscriber_id"),
        # The console lists one newsletter's readers (any status) in subscriber-id order, page
        # by page (keyset): a range scan here instead of a sort of every row of the list.
        Index("ix_subscriptions_newsletter_subscriber", "newsletter_id", "subscriber_id"),
    )


class ConsentRecord(Base):
    """Proof of consent: what was shown, to whom, when and where, and when it was confirmed."""

    __tablename__ = "consent_records"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"))
    newsletter_slugs: Mapped[list[str]] = mapped_column(JSON, default=list)
    consent_text_version: Mapped[str] = mapped_column(String(64))
    consent_text: Mapped[str] = mapped_column(Text, default="")
    # The name typed with this signup: it becomes the reader's only when this signup is
    # confirmed, so a stranger's signup cannot put words into someone's welcome mail.
    name: Mapped[str] = mapped_column(String(200), default="")
    source: Mapped[str] = mapped_column(String(500), default="")
    signup_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    signup_ip: Mapped[str] = mapped_column(String(64), default="")
    signup_user_agent: Mapped[str] = mapped_column(String(500), default="")
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    confirm_ip: Mapped[str] = mapped_column(String(64), default="")
    confirm_user_agent: Mapped[str] = mapped_column(String(500), default="")
    # The confirmation token's nonce: binds one mail's link to this record.
    nonce: Mapped[str] = mapped_column(String(64), unique=True)

    __table_args__ = (Index("ix_consent_records_subscriber", "subscriber_id"),)


class ErasedConsent(Base):
    """What is left of a consent record once its reader was erased (readers/erasure.py).

    GDPR Art. 7(1) asks us to be able to prove consent, Art. 17 to erase the person: we keep the
    hash of the address (the suppression list's, so whoever holds the address can match it), what
    was agreed to (lists, wording and its version), where it came from, and when it was given
    and confirmed; no address, name, IP or browser. Deleted after
    ``NEWSLETTER_ERASED_CONSENT_DAYS``.
    """

    __tablename__ = "erased_consents"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    email_hash: Mapped[str] = mapped_column(String(64), index=True)
    newsletter_slugs: Mapped[list[str]] = mapped_column(JSON, default=list)
    consent_text_version: Mapped[str] = mapped_column(String(64))
    consent_text: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str] = mapped_column(String(500), default="")
    signup_at: Mapped[datetime] = mapped_column(UTCDateTime)
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    erased_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class Suppression(Base):
    """An address we must never mail again. Keyed on a hash so it survives deleting the reader."""

    __tablename__ = "suppressions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    email_hash: Mapped[str] = mapped_column(String(64), unique=True)
    reason: Mapped[str] = mapped_column(String(40))
    detail: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SignupMailLog(Base):
    """One row per signup-triggered mail, so one inbox cannot be mail-bombed through the form."""

    __tablename__ = "signup_mail_log"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # The inbox hash (readers.addresses.inbox_hash), so every spelling of one inbox shares a cap.
    email_hash: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(20))
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (Index("ix_signup_mail_log_hash_sent", "email_hash", "sent_at"),)


# --- Posts and digests -------------------------------------------------------------------------


class Feed(Base):
    """A source of posts: an RSS/Atom/JSON feed URL or a local file."""

    __tablename__ = "feeds"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    url: Mapped[str] = mapped_column(String(2000), unique=True)
    title: Mapped[str] = mapped_column(String(500), default="")
    etag: Mapped[str] = mapped_column(String(500), default="")
    last_modified: Mapped[str] = mapped_column(String(100), default="")
    last_fetched_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_error: Mapped[str] = mapped_column(Text, default="")
    error_count: Mapped[int] = mapped_column(Integer, default=0)
    next_fetch_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Post(Base):
    """One article of the site, from a feed or pushed by the CMS. Content is sanitised HTML."""

    __tablename__ = "posts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    feed_id: Mapped[int | None] = mapped_column(
        ForeignKey("feeds.id", ondelete="SET NULL"), nullable=True
    )
    guid: Mapped[str] = mapped_column(String(1000), unique=True)
    link: Mapped[str] = mapped_column(String(2000))
    title: Mapped[str] = mapped_column(String(1000))
    summary: Mapped[str] = mapped_column(Text, default="")
    content_html: Mapped[str] = mapped_column(Text, default="")
    author: Mapped[str] = mapped_column(String(300), default="")
    categories: Mapped[list[str]] = mapped_column(JSON, default=list)
    image_url: Mapped[str] = mapped_column(String(2000), default="")
    published_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Set when the CMS retracts an article: it never goes out again, and a feed that still
    # lists it does not bring it back (only a new push of the same guid does).
    retracted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    __table_args__ = (
        Index("ix_posts_published_at", "published_at"),
        Index("ix_posts_link", "link"),
    )


class IssueStatus(enum.StrEnum):
    """The life of one send: draft → scheduled → sending ⇄ paused → sent / cancelled / failed."""

    DRAFT = "draft"
    SCHEDULED = "scheduled"
    SENDING = "sending"
    PAUSED = "paused"
    SENT = "sent"
    CANCELLED = "cancelled"
    FAILED = "failed"
    SKIPPED = "skipped"  # nothing new to send


class Issue(Base):
    """One send of one newsletter: a digest built from posts or an editor's campaign."""

    __tablename__ = "issues"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    newsletter_id: Mapped[int] = mapped_column(ForeignKey("newsletters.id", ondelete="CASCADE"))
    kind: Mapped[NewsletterKind] = mapped_column(_enum(NewsletterKind, "newsletter_kind"))
    status: Mapped[IssueStatus] = mapped_column(
        _enum(IssueStatus, "issue_status"), default=IssueStatus.DRAFT
    )
    status_reason: Mapped[str] = mapped_column(Text, default="")
    # Which readers: those of this frequency (None: every active subscription).
    frequency: Mapped[Frequency | None] = mapped_column(
        _enum(Frequency, "frequency"), nullable=True
    )
    subject: Mapped[str] = mapped_column(String(998), default="")
    preheader: Mapped[str] = mapped_column(String(500), default="")
    # Campaign bodies written by an editor (sanitised HTML and plain text).
    body_html: Mapped[str] = mapped_column(Text, default="")
    body_text: Mapped[str] = mapped_column(Text, default="")
    # Digest window: posts published in (window_start, window_end].
    window_start: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    window_end: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    post_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    schedule_id: Mapped[int | None] = mapped_column(
        ForeignKey("schedules.id", ondelete="SET NULL"), nullable=True
    )
    send_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Local-time delivery: send each reader when their zone reaches this local time ("08:00").
    local_send_time: Mapped[str] = mapped_column(String(5), default="")
    held: Mapped[bool] = mapped_column(Boolean, default=False)
    # Fan-out checkpoint (listmonk style): snapshot of the highest id and how far we got.
    max_subscriber_id: Mapped[int] = mapped_column(BigInteger, default=0)
    last_subscriber_id: Mapped[int] = mapped_column(BigInteger, default=0)
    total: Mapped[int] = mapped_column(Integer, default=0)
    # Fan-out lease (heartbeat while it runs) and completion; a lost fan-out is restarted.
    fanout_claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    fanout_finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Auto-pause window: final outcomes since the send (re)started, and how many failed.
    attempt_count: Mapped[int] = mapped_column(Integer, default=0)
    error_count: Mapped[int] = mapped_column(Integer, default=0)
    # The deliverability guard (newsletter/inbound/guard.py): mails with a final answer, hard
    # bounces (at SMTP time or reported later) and spam complaints since the send started.
    # Unlike the window above, a resume keeps them.
    mailed_count: Mapped[int] = mapped_column(Integer, default=0)
    bounce_count: Mapped[int] = mapped_column(Integer, default=0)
    complaint_count: Mapped[int] = mapped_column(Integer, default=0)
    # The pre-send check (newsletter/issues/presend.py): why it was overridden, by whom, when;
    # "" when the send went out having passed it.
    check_override: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    newsletter: Mapped[Newsletter] = relationship()

    __table_args__ = (Index("ix_issues_newsletter_status", "newsletter_id", "status"),)


class DeliveryStatus(enum.StrEnum):
    """The fate of one mail to one reader."""

    QUEUED = "queued"
    SENDING = "sending"  # handed to SMTP; if a worker dies here the outcome is unknown
    SENT = "sent"
    FAILED = "failed"  # permanent failure (5xx) or gave up retrying
    BOUNCED = "bounced"  # asynchronous bounce reported later
    SKIPPED = "skipped"  # nothing for this reader (no new posts for their topics)


class Delivery(Base):
    """The per-recipient outbox: one row per (issue, reader), the unit of "exactly once"."""

    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    issue_id: Mapped[int] = mapped_column(ForeignKey("issues.id", ondelete="CASCADE"))
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"))
    status: Mapped[DeliveryStatus] = mapped_column(
        _enum(DeliveryStatus, "delivery_status"), default=DeliveryStatus.QUEUED
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    smtp_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    smtp_response: Mapped[str] = mapped_column(Text, default="")
    message_id: Mapped[str] = mapped_column(String(300), default="")
    # Local-time cohort: when this reader's mail becomes due (UTC).
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # When a send_batch task was last queued for this row (NULL: nobody is on it yet).
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Lease of a batch that is sending this row: rows stuck in `sending` past the lease are
    # re-queued by the tick (the worker died). claimed_by is "host:pid:batch" for diagnosis.
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    claimed_by: Mapped[str] = mapped_column(String(120), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    __table_args__ = (
        UniqueConstraint("issue_id", "subscriber_id"),
        # Serves progress counts (issue, status), the pump (queued, not enqueued, due) and the
        # stale-task sweep (queued, enqueued long ago) as range scans.
        Index("ix_deliveries_issue_status", "issue_id", "status", "enqueued_at", "due_at"),
    )


class FeedbackKind(enum.StrEnum):
    """What inbound mail reported about a mail we sent (newsletter/inbound/processing.py)."""

    HARD_BOUNCE = "hard-bounce"  # 5.x.x: the address is dead
    SOFT_BOUNCE = "soft-bounce"  # 4.x.x: mailbox full, greylisted, delayed
    COMPLAINT = "complaint"  # the reader marked it as spam (ARF feedback report)


class FeedbackEvent(Base):
    """A bounce or complaint about one reader's mail. One row per (reader, issue, kind), so the
    same report processed twice adds nothing and soft bounces count distinct issues."""

    __tablename__ = "feedback_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"))
    issue_id: Mapped[int | None] = mapped_column(
        ForeignKey("issues.id", ondelete="CASCADE"), nullable=True
    )
    kind: Mapped[FeedbackKind] = mapped_column(_enum(FeedbackKind, "feedback_kind"))
    status: Mapped[str] = mapped_column(String(20), default="")  # enhanced code, e.g. "5.1.1"
    detail: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        UniqueConstraint("subscriber_id", "issue_id", "kind"),
        Index("ix_feedback_events_issue_kind", "issue_id", "kind"),
    )


class UnmatchedReport(Base):
    """A bounce or complaint that proved no mail of ours (no signed VERP address, no quoted
    Message-ID of a delivery to the address it names, no token): recorded for ops, acted on never.
    One row per distinct message (sha256 of its bytes), so processing it again adds nothing. The
    addresses it names are not kept: they may be anyone's."""

    __tablename__ = "unmatched_reports"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(20))  # "bounce" or "complaint"
    message_id: Mapped[str] = mapped_column(String(300), default="")  # of the report itself
    reason: Mapped[str] = mapped_column(String(300), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class SentPost(Base):
    """Per-reader ledger: a post mailed to a reader in one digest is never sent in another."""

    __tablename__ = "sent_posts"

    subscriber_id: Mapped[int] = mapped_column(
        ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True
    )
    post_id: Mapped[int] = mapped_column(
        ForeignKey("posts.id", ondelete="CASCADE"), primary_key=True
    )
    issue_id: Mapped[int] = mapped_column(ForeignKey("issues.id", ondelete="CASCADE"))
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Schedule(Base):
    """A periodic mailing: a cron expression in a time zone, fired by beat's tick."""

    __tablename__ = "schedules"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    newsletter_id: Mapped[int] = mapped_column(ForeignKey("newsletters.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200), default="")
    cron: Mapped[str] = mapped_column(String(100))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    frequency: Mapped[Frequency | None] = mapped_column(
        _enum(Frequency, "frequency"), nullable=True
    )
    # Deliver at the cron's local time in each reader's own zone instead of the schedule's.
    reader_local_time: Mapped[bool] = mapped_column(Boolean, default=False)
    # Editor's veto: prepare the issue as a draft this many minutes before it goes out.
    prepare_minutes: Mapped[int] = mapped_column(Integer, default=0)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Where the tick starts looking for due times; advanced as firings are recorded.
    checked_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    newsletter: Mapped[Newsletter] = relationship()


class ScheduleFiring(Base):
    """One due time of one schedule. The unique key is what stops a second beat sending twice."""

    __tablename__ = "schedule_firings"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    schedule_id: Mapped[int] = mapped_column(ForeignKey("schedules.id", ondelete="CASCADE"))
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    issue_id: Mapped[int | None] = mapped_column(
        ForeignKey("issues.id", ondelete="SET NULL"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (UniqueConstraint("schedule_id", "due_at"),)


# --- API idempotency keys (newsletter/web/api_idempotency.py) -----------------------------------


class IdempotencyKey(Base):
    """An ``Idempotency-Key`` a token sent on a POST, and the first answer, to replay.

    ``status`` is null while the first request runs (a second one then answers 409); only a
    success is kept, so a refused request may be retried with the same key.
    """

    __tablename__ = "api_idempotency_keys"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    api_token_id: Mapped[int] = mapped_column(
        BigId, ForeignKey("api_tokens.id", ondelete="CASCADE")
    )
    key: Mapped[str] = mapped_column(String(255))
    # SHA-256 of method, path and body: the same key with another request is a 422.
    fingerprint: Mapped[str] = mapped_column(String(64))
    status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    body: Mapped[str] = mapped_column(Text, default="")
    headers: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (UniqueConstraint("api_token_id", "key"),)


class ApiToken(Base):
    """A bearer token for the JSON API and /metrics. Only its SHA-256 is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # Space-separated scope names (as in OAuth 2's ``scope``): readable in psql and no JSON
    # quirks across SQLite and PostgreSQL. Names are checked against access.api_tokens.SCOPES
    # when a token is created; a token with none may do nothing.
    scopes: Mapped[str] = mapped_column(String(500), default="", server_default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The console user the token belongs to (None: made by ops on the CLI). An owned token may
    # never do more than its owner's role allows, now: a demoted owner's token loses rights.
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), nullable=True, index=True
    )

    user: Mapped[User | None] = relationship()


# --- The newsroom console: accounts and their sessions ------------------------------------------


class UserRole(enum.StrEnum):
    """What a console user may do (newsletter/access/roles.py has the rule)."""

    ADMIN = "admin"  # everything: users, settings
    EDITOR = "editor"  # content, sends, schedules, subscribers
    VIEWER = "viewer"  # read only


class User(Base):
    """A person who signs in to the console. ``email`` is stored lower-case and is unique."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    # An argon2id hash in PHC format (argon2-cffi); its parameters travel inside it.
    password_hash: Mapped[str] = mapped_column(String(300))
    # A one-time password printed by the CLI: the first login must replace it.
    must_change_password: Mapped[bool] = mapped_column(Boolean, default=False)
    role: Mapped[UserRole] = mapped_column(_enum(UserRole, "user_role"))
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The confirmed TOTP secret (base32; empty: not enrolled) and one shown but not yet confirmed.
    totp_secret: Mapped[str] = mapped_column(String(64), default="")
    totp_pending_secret: Mapped[str] = mapped_column(String(64), default="")
    totp_required: Mapped[bool] = mapped_column(Boolean, default=False)
    # The 30-second step of the last code accepted: that code, and older ones, never work again.
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    password_changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ConsoleSession(Base):
    """A signed-in browser. The cookie holds a random id; only its SHA-256 is stored here."""

    __tablename__ = "console_sessions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The absolute end (created + NEWSLETTER_CONSOLE_SESSION_MAX_DAYS); idle ends come earlier.
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Password given, TOTP code still due: such a session opens the code step and nothing else.
    totp_pending: Mapped[bool] = mapped_column(Boolean, default=False)
    user_agent: Mapped[str] = mapped_column(String(500), default="")
    ip: Mapped[str] = mapped_column(String(64), default="")
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    user: Mapped[User] = relationship()


def as_dict(row: Any, *names: str) -> dict[str, Any]:
    """Pick attributes of a row into a plain dict (for JSON and exports)."""
    out: dict[str, Any] = {}
    for name in names:
        value = getattr(row, name)
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, enum.Enum):
            value = value.value
        out[name] = value
    return out


# --- Outbound webhooks (newsletter/hooks) ------------------------------------------------------


class WebhookEndpoint(Base):
    """A URL of the site's own systems (a CRM) that is told when something happens here."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str] = mapped_column(String(500), default="")
    # The event types it gets (hooks.events.EVENT_TYPES); empty means every one.
    event_types: Mapped[list[str]] = mapped_column(JSON, default=list)
    # The signing secret, "whsec_<base64>". Unlike an API token it is kept as it is, not hashed:
    # every delivery is signed with it, so it must be read back (it is shown once, never logged).
    secret: Mapped[str] = mapped_column(String(100))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str] = mapped_column(Text, default="")
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Since its last successful attempt: deliveries that failed for good in a row, and when the
    # first attempt failed (what the disabling rules of hooks.sending count).
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class WebhookDeliveryStatus(enum.StrEnum):
    """Where one event's delivery to one endpoint stands."""

    PENDING = "pending"  # to be attempted (again) at next_attempt_at
    DELIVERED = "delivered"  # the endpoint answered 2xx
    FAILED = "failed"  # every attempt failed, or the address was refused: no more attempts


class WebhookDelivery(Base):
    """The outbox: one event for one endpoint, written in the transaction of the change."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    endpoint_id: Mapped[int] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    # The Standard Webhooks ``webhook-id``: the same on every attempt, so a receiver can
    # recognise a retry of a message it already handled.
    message_id: Mapped[str] = mapped_column(String(64), unique=True)
    event_type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    # The reader the event is about (its payload holds their address): erasing them deletes
    # these too. No foreign key: the reader row goes first, and events outlive no one.
    subscriber_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True, index=True)
    status: Mapped[WebhookDeliveryStatus] = mapped_column(
        _enum(WebhookDeliveryStatus, "webhook_delivery_status"),
        default=WebhookDeliveryStatus.PENDING,
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # When it is due; while an attempt runs, the end of that attempt's lease.
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # When the tick's sweep last enqueued it (a task whose message was lost).
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    attempt_rows: Mapped[list[WebhookAttempt]] = relationship(
        back_populates="delivery",
        cascade="all, delete-orphan",
        order_by="WebhookAttempt.id",
    )

    __table_args__ = (
        Index("ix_webhook_deliveries_status_next", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_endpoint", "endpoint_id", "id"),
    )


class WebhookAttempt(Base):
    """One POST of a delivery and what came of it: the answer, or why there was none."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True
    )
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    duration_ms: Mapped[int] = mapped_column(Integer, default=0)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # The start of the answer's body (at most 1 kB), for whoever debugs the receiver.
    response_body: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str] = mapped_column(Text, default="")

    delivery: Mapped[WebhookDelivery] = relationship(back_populates="attempt_rows")
