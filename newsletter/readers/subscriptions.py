"""The reader's path: subscribe, confirm (double opt-in), unsubscribe, pause, preferences, purge.

Plain functions over a Session. None of them commits: the caller (a view, a task, a command)
commits and only then enqueues mail, so a worker never looks for rows that are not there yet.

Rules worth knowing:

* A signup never changes what an existing reader already has. It adds pending subscriptions for
  lists the reader is not on and a consent record; only the confirmation link activates them.
  The name typed into a signup form is stored only for a brand-new address, so nobody can rename
  someone else through the public form.
* What a signup *does* is decided here and returned to the caller as a :class:`SignupAction`, but
  the web response never depends on it (no enumeration of who is subscribed).
* Unsubscribed is a subscription status, not a suppression. Suppression is for bounces,
  complaints and explicit "never mail me": a suppressed address is never mailed at all.
"""

from __future__ import annotations

import enum
import json
import zoneinfo
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache

from sqlalchemy import Text, cast, delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from newsletter.readers.addresses import email_hash, email_key
from newsletter.readers.consent import mark_confirmed, record_consent
from newsletter.readers.newsletters import choosable_newsletters
from newsletter.readers.tokens import (
    ConfirmClaim,
    TokenError,
    address_digest,
    make_confirm_token,
    read_confirm_token,
    read_manage_token,
)
from newsletter.settings import Settings
from newsletter.store.db import utcnow
from newsletter.store.models import (
    ConsentRecord,
    Frequency,
    Newsletter,
    NewsletterKind,
    Post,
    SignupMailLog,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
    Suppression,
)

PAUSE_WEEKS = (2, 4, 8)
# "Resubscribe" on the page after unsubscribing reactivates, without a new opt-in, only the lists
# just left through that same link and only for this long. The link proves the reader holds the
# mailbox (as the preferences page does), and lists they had confirmed before are all it restores.
RESUBSCRIBE_WINDOW = timedelta(days=30)
# Signup-mail log rows are only needed for the per-day cap.
MAIL_LOG_KEEP = timedelta(days=2)
NAME_MAX = 200


class SubscriptionError(ValueError):
    """A request the rules refuse; the message is safe to show the reader."""


class UnknownNewsletter(SubscriptionError):
    """A list id or slug that does not exist (or is not open to signups)."""


class InvalidLink(Exception):
    """A mailed link that cannot be used: forged (400), revoked (404) or expired (410)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status

    @property
    def expired(self) -> bool:
        """True for a link that was valid once and has run out."""
        return self.status == 410


class SignupAction(enum.StrEnum):
    """Which mail, if any, a signup leads to (never visible in the web response)."""

    CONFIRM = "confirm"  # new lists to confirm: send the confirmation mail
    ALREADY_SUBSCRIBED = "already_subscribed"  # confirmed on all of them: a short reminder
    NONE = "none"  # suppressed or bounced: send nothing


@dataclass(frozen=True)
class Signup:
    """One submitted signup form, already validated: a normalised address and list ids."""

    email: str
    newsletter_ids: tuple[int, ...]
    name: str = ""
    source: str = ""
    ip: str = ""
    user_agent: str = ""
    consent_text: str = ""
    consent_version: str = ""


@dataclass(frozen=True)
class SignupResult:
    """What :func:`subscribe` did."""

    action: SignupAction
    subscriber_id: int | None = None
    consent_id: int | None = None


@dataclass(frozen=True)
class Confirmation:
    """A verified confirmation link: the reader, the consent record and the lists it covers."""

    subscriber: Subscriber
    consent: ConsentRecord
    newsletters: list[Newsletter]


@dataclass(frozen=True)
class ConfirmResult:
    """What :func:`confirm` did; ``first_time`` is False for a repeated click."""

    subscriber_id: int
    activated: tuple[int, ...]
    first_time: bool


@dataclass(frozen=True)
class ManageLink:
    """A verified preferences/unsubscribe link: the reader and, optionally, one list."""

    subscriber: Subscriber
    newsletter_id: int | None
    newsletter: Newsletter | None


@dataclass(frozen=True)
class Preferences:
    """What the preferences form submits."""

    name: str
    timezone: str
    newsletter_ids: frozenset[int]
    topics: tuple[str, ...] = ()
    frequencies: dict[int, Frequency] = field(default_factory=dict)
    consent_text: str = ""
    consent_version: str = ""


@dataclass(frozen=True)
class PreferencesChange:
    """Lists added and removed by a preferences update."""

    added: tuple[int, ...]
    removed: tuple[int, ...]


@dataclass(frozen=True)
class PurgeResult:
    """Rows removed by :func:`purge_pending`."""

    subscribers: int
    subscriptions: int
    consent_records: int
    mail_log: int


# --- lists -------------------------------------------------------------------------------------


def resolve_newsletters(
    session: Session, refs: Iterable[str], *, public_only: bool = True
) -> list[Newsletter]:
    """Map slugs or numeric ids to lists (deduplicated, form order); unknown → UnknownNewsletter."""
    wanted: list[str] = []
    for ref in refs:
        ref = ref.strip()
        if ref and ref not in wanted:
            wanted.append(ref)
    if not wanted:
        raise SubscriptionError("Please choose at least one newsletter.")
    # isdecimal() alone admits other scripts' digits ("٣") and isdigit() superscripts ("²"),
    # which int() refuses or reads as a different id: only ASCII digits name an id.
    ids = [int(r) for r in wanted if r.isascii() and r.isdecimal() and len(r) < 19]
    query = select(Newsletter).where(Newsletter.slug.in_(wanted) | Newsletter.id.in_(ids))
    if public_only:
        query = query.where(Newsletter.is_public.is_(True))
    found = list(session.scalars(query))
    # A slug wins over an id that happens to be spelt the same.
    by_ref = {str(n.id): n for n in found} | {n.slug: n for n in found}
    missing = [r for r in wanted if r not in by_ref]
    if missing:
        shown = ", ".join(repr(m[:40]) for m in missing[:3])
        raise UnknownNewsletter(
            f"We have no newsletter called {shown}. Please choose from the list."
        )
    result: list[Newsletter] = []
    for ref in wanted:
        newsletter = by_ref[ref]
        if newsletter not in result:
            result.append(newsletter)
    return sorted(result, key=lambda n: (n.position, n.id))


def available_topics(session: Session) -> list[str]:
    """Topics a reader can pick: the categories posts carry plus each list's own categories."""
    topics: set[str] = set()
    # DISTINCT on the JSON text keeps this to one row per category combination, not per post
    # (and works on PostgreSQL, whose json type has no equality operator).
    for raw in session.scalars(select(cast(Post.categories, Text)).distinct()):
        topics.update(_json_strings(raw))
    for raw in session.scalars(select(cast(Newsletter.categories, Text))):
        topics.update(_json_strings(raw))
    return sorted((t for t in topics if t.strip()), key=str.casefold)


def _json_strings(raw: str | None) -> list[str]:
    """The strings of a stored JSON list, tolerating NULL and junk."""
    if not raw:
        return []
    try:
        value = json.loads(raw)
    except ValueError:
        return []
    return [str(v).strip() for v in value if isinstance(v, str)] if isinstance(value, list) else []


@lru_cache(maxsize=1)
def available_timezones() -> tuple[str, ...]:
    """IANA zone names a reader can choose (without the legacy aliases tzdata also ships)."""
    skip = ("posix/", "right/", "Etc/", "SystemV/", "US/", "Canada/", "Brazil/", "Mexico/")
    names = {
        name for name in zoneinfo.available_timezones() if "/" in name and not name.startswith(skip)
    }
    names.add("UTC")
    return tuple(sorted(names))


def valid_timezone(name: str) -> bool:
    """True for a zone the preferences form offers."""
    return name in set(available_timezones())


# --- suppression -------------------------------------------------------------------------------


def suppress(session: Session, normalised_email: str, reason: str, detail: str = "") -> Suppression:
    """Put an address on the never-mail list (idempotent; the first reason is kept)."""
    key = email_hash(normalised_email)
    existing = session.scalar(select(Suppression).where(Suppression.email_hash == key))
    if existing is not None:
        return existing
    row = Suppression(email_hash=key, reason=reason[:40], detail=detail)
    session.add(row)
    session.flush()
    return row


def is_suppressed(session: Session, email: str) -> bool:
    """True when an address must never be mailed (bounce, complaint, explicit request)."""
    key = email_hash(email)
    return session.scalar(select(Suppression.id).where(Suppression.email_hash == key)) is not None


# --- signup and double opt-in --------------------------------------------------------------------


def subscribe(
    session: Session, settings: Settings, signup: Signup, now: datetime | None = None
) -> SignupResult:
    """Record a signup and decide which mail it leads to. Call at the start of a transaction.

    A concurrent signup for the same new address can collide on the unique key; the whole
    transaction is then rolled back and retried once, when the other row is visible.
    """
    if not signup.newsletter_ids:
        raise SubscriptionError("Please choose at least one newsletter.")
    try:
        return _subscribe(session, settings, signup, now or utcnow())
    except IntegrityError:
        session.rollback()
        return _subscribe(session, settings, signup, now or utcnow())


def _subscribe(session: Session, settings: Settings, signup: Signup, now: datetime) -> SignupResult:
    """One attempt at :func:`subscribe` (IntegrityError when a concurrent signup won the race)."""
    if is_suppressed(session, signup.email):
        return SignupResult(SignupAction.NONE)
    newsletters = _chosen_newsletters(session, signup)
    subscriber, created = _signup_subscriber(session, signup, now)
    if not created and subscriber.status == SubscriberStatus.BOUNCED:
        return SignupResult(SignupAction.NONE, subscriber.id)

    current = {s.newsletter_id: s for s in subscriber.subscriptions}
    to_confirm = [
        n
        for n in newsletters
        if n.id not in current or current[n.id].status != SubscriptionStatus.ACTIVE
    ]
    if not to_confirm:
        if subscriber.status == SubscriberStatus.ACTIVE:
            return SignupResult(SignupAction.ALREADY_SUBSCRIBED, subscriber.id)
        to_confirm = newsletters  # inconsistent leftovers: let the reader confirm again
    _add_pending_subscriptions(session, subscriber, to_confirm, current, now)
    record = record_consent(
        session,
        subscriber,
        newsletter_slugs=[n.slug for n in to_confirm],
        version=signup.consent_version or settings.consent_version,
        text=signup.consent_text,
        source=signup.source,
        ip=signup.ip,
        user_agent=signup.user_agent,
        now=now,
    )
    session.flush()
    return SignupResult(SignupAction.CONFIRM, subscriber.id, record.id)


def _chosen_newsletters(session: Session, signup: Signup) -> list[Newsletter]:
    """The signup's lists in list order; UnknownNewsletter if any of them does not exist."""
    newsletters = list(
        session.scalars(
            select(Newsletter)
            .where(Newsletter.id.in_(signup.newsletter_ids))
            .order_by(Newsletter.position, Newsletter.id)
        )
    )
    if len(newsletters) != len(set(signup.newsletter_ids)):
        raise UnknownNewsletter("One of the chosen newsletters does not exist.")
    return newsletters


def _signup_subscriber(session: Session, signup: Signup, now: datetime) -> tuple[Subscriber, bool]:
    """The reader with the signup's address, created pending if new; and whether it was created."""
    key = email_key(signup.email)
    subscriber = session.scalar(select(Subscriber).where(Subscriber.email_key == key))
    if subscriber is not None:
        return subscriber, False
    subscriber = Subscriber(
        email=signup.email,
        email_key=key,
        name=_clean_name(signup.name),
        status=SubscriberStatus.PENDING,
        created_at=now,
    )
    session.add(subscriber)
    session.flush()
    return subscriber, True


def _add_pending_subscriptions(
    session: Session,
    subscriber: Subscriber,
    newsletters: list[Newsletter],
    current: dict[int, Subscription],
    now: datetime,
) -> None:
    """Add a pending subscription for each of these lists the reader has none for yet."""
    for newsletter in newsletters:
        if newsletter.id not in current:
            session.add(
                Subscription(
                    subscriber_id=subscriber.id,
                    newsletter_id=newsletter.id,
                    status=SubscriptionStatus.PENDING,
                    frequency=newsletter.default_frequency,
                    created_at=now,
                )
            )


def confirm_token_for(settings: Settings, session: Session, consent_id: int) -> str | None:
    """A fresh confirmation token for a consent record (None when the record is gone)."""
    record = session.get(ConsentRecord, consent_id)
    if record is None:
        return None
    subscriber = session.get(Subscriber, record.subscriber_id)
    if subscriber is None:
        return None
    ids = session.scalars(
        select(Newsletter.id).where(Newsletter.slug.in_(record.newsletter_slugs))
    ).all()
    claim = ConfirmClaim(
        subscriber_id=subscriber.id,
        address=address_digest(subscriber.email_key),
        newsletter_ids=tuple(sorted(ids)),
        nonce=record.nonce,
    )
    return make_confirm_token(settings.secret_key, claim)


def read_confirmation(session: Session, settings: Settings, token: str) -> Confirmation:
    """Verify a confirmation link against the database, or raise :class:`InvalidLink`."""
    max_age = settings.confirm_expiry_days * 86400
    try:
        claim = read_confirm_token(settings.secret_key, token, max_age)
    except TokenError as exc:
        if exc.expired:
            raise InvalidLink(
                "This confirmation link has expired. Please sign up again to get a new one.", 410
            ) from exc
        raise InvalidLink(
            "This confirmation link is not valid. Please copy the whole link from the mail, "
            "or sign up again.",
            400,
        ) from exc
    subscriber = session.get(Subscriber, claim.subscriber_id)
    record = session.scalar(select(ConsentRecord).where(ConsentRecord.nonce == claim.nonce))
    if (
        subscriber is None
        or record is None
        or record.subscriber_id != subscriber.id
        or claim.address != address_digest(subscriber.email_key)
    ):
        raise InvalidLink(
            "This confirmation link is not valid any more. Please sign up again.", 400
        )
    if subscriber.status == SubscriberStatus.BOUNCED or is_suppressed(session, subscriber.email):
        raise InvalidLink(
            "This address is on our do-not-mail list, so we cannot subscribe it. "
            "Please contact us if that is a mistake.",
            410,
        )
    newsletters = list(
        session.scalars(
            select(Newsletter)
            .where(Newsletter.id.in_(claim.newsletter_ids))
            .order_by(Newsletter.position, Newsletter.id)
        )
    )
    return Confirmation(subscriber, record, newsletters)


def confirm(
    session: Session,
    confirmation: Confirmation,
    *,
    ip: str = "",
    user_agent: str = "",
    now: datetime | None = None,
) -> ConfirmResult:
    """Activate the reader and the lists a confirmation link covers; a second click does nothing."""
    now = now or utcnow()
    subscriber = confirmation.subscriber
    if not mark_confirmed(confirmation.consent, ip=ip, user_agent=user_agent, now=now):
        return ConfirmResult(subscriber.id, (), first_time=False)
    current = {s.newsletter_id: s for s in subscriber.subscriptions}
    activated: list[int] = []
    for newsletter in confirmation.newsletters:
        sub = _subscription_to(session, subscriber, current, newsletter, now)
        if sub.status != SubscriptionStatus.ACTIVE:
            sub.status = SubscriptionStatus.ACTIVE
            sub.confirmed_at = now
            sub.unsubscribed_at = None
            sub.paused_until = None
            activated.append(newsletter.id)
    if activated or _has_active(subscriber):
        subscriber.status = SubscriberStatus.ACTIVE
    if subscriber.confirmed_at is None:
        subscriber.confirmed_at = now
    session.flush()
    return ConfirmResult(subscriber.id, tuple(activated), first_time=True)


# --- managing a subscription ----------------------------------------------------------------------


def read_manage_link(session: Session, settings: Settings, token: str) -> ManageLink:
    """Verify a preferences or unsubscribe link, or raise :class:`InvalidLink`."""
    try:
        claim = read_manage_token(settings.secret_key, token)
    except TokenError as exc:
        raise InvalidLink(
            "This link is not valid. Please copy the whole link from one of our mails.", 400
        ) from exc
    subscriber = session.get(Subscriber, claim.subscriber_id)
    if subscriber is None or subscriber.token_version != claim.version:
        raise InvalidLink(
            "This link is no longer in use. Please use the link in a more recent mail from us.",
            404,
        )
    newsletter = (
        session.get(Newsletter, claim.newsletter_id) if claim.newsletter_id is not None else None
    )
    return ManageLink(subscriber, claim.newsletter_id, newsletter)


def _in_scope(sub: Subscription, newsletter_id: int | None) -> bool:
    return newsletter_id is None or sub.newsletter_id == newsletter_id


def _has_active(subscriber: Subscriber) -> bool:
    return any(s.status == SubscriptionStatus.ACTIVE for s in subscriber.subscriptions)


def _settle_status(subscriber: Subscriber) -> None:
    """Derive the reader's overall status from their subscriptions after a change."""
    if subscriber.status == SubscriberStatus.BOUNCED:
        return
    if _has_active(subscriber):
        subscriber.status = SubscriberStatus.ACTIVE
    elif subscriber.status == SubscriberStatus.ACTIVE or not any(
        s.status == SubscriptionStatus.PENDING for s in subscriber.subscriptions
    ):
        subscriber.status = SubscriberStatus.UNSUBSCRIBED


def unsubscribe(
    session: Session, subscriber: Subscriber, newsletter_id: int | None, now: datetime | None = None
) -> list[int]:
    """Leave one list (all with None) and return the ids left; leaving the last → unsubscribed."""
    now = now or utcnow()
    left: list[int] = []
    for sub in subscriber.subscriptions:
        if _in_scope(sub, newsletter_id) and sub.status != SubscriptionStatus.UNSUBSCRIBED:
            sub.status = SubscriptionStatus.UNSUBSCRIBED
            sub.unsubscribed_at = now
            sub.paused_until = None
            left.append(sub.newsletter_id)
    if newsletter_id is None and subscriber.status != SubscriberStatus.BOUNCED:
        subscriber.status = SubscriberStatus.UNSUBSCRIBED
    else:
        _settle_status(subscriber)
    session.flush()
    return left


def resubscribe(
    session: Session, subscriber: Subscriber, newsletter_id: int | None, now: datetime | None = None
) -> list[int]:
    """Undo a recent unsubscribe made through the same link (see RESUBSCRIBE_WINDOW)."""
    now = now or utcnow()
    if subscriber.status == SubscriberStatus.BOUNCED or is_suppressed(session, subscriber.email):
        return []
    candidates = [
        s
        for s in subscriber.subscriptions
        if _in_scope(s, newsletter_id)
        and s.status == SubscriptionStatus.UNSUBSCRIBED
        and s.confirmed_at is not None  # only lists the reader had confirmed before
        and s.unsubscribed_at is not None
        and s.unsubscribed_at >= now - RESUBSCRIBE_WINDOW
    ]
    if newsletter_id is None and candidates:
        # The lists left together in the latest "leave all", not older departures.
        latest = max(s.unsubscribed_at for s in candidates if s.unsubscribed_at is not None)
        candidates = [
            s
            for s in candidates
            if s.unsubscribed_at is not None and latest - s.unsubscribed_at <= timedelta(seconds=2)
        ]
    for sub in candidates:
        sub.status = SubscriptionStatus.ACTIVE
        sub.unsubscribed_at = None
    if candidates:
        subscriber.status = SubscriberStatus.ACTIVE
    session.flush()
    return [s.newsletter_id for s in candidates]


def pause(
    session: Session,
    subscriber: Subscriber,
    newsletter_id: int | None,
    weeks: int,
    now: datetime | None = None,
) -> list[int]:
    """Pause active lists in scope for 2, 4 or 8 weeks; returns the paused ids."""
    if weeks not in PAUSE_WEEKS:
        raise SubscriptionError("You can pause for 2, 4 or 8 weeks.")
    until = (now or utcnow()) + timedelta(weeks=weeks)
    paused: list[int] = []
    for sub in subscriber.subscriptions:
        if _in_scope(sub, newsletter_id) and sub.status == SubscriptionStatus.ACTIVE:
            sub.paused_until = until
            paused.append(sub.newsletter_id)
    session.flush()
    return paused


def switch_frequency(
    session: Session, subscriber: Subscriber, newsletter_id: int | None, frequency: Frequency
) -> list[int]:
    """Set the digest frequency of the active digest lists in scope; returns the changed ids."""
    changed: list[int] = []
    for sub in subscriber.subscriptions:
        if (
            _in_scope(sub, newsletter_id)
            and sub.status == SubscriptionStatus.ACTIVE
            and sub.newsletter.kind == NewsletterKind.DIGEST
            and sub.frequency != frequency
        ):
            sub.frequency = frequency
            changed.append(sub.newsletter_id)
    session.flush()
    return changed


def update_preferences(
    session: Session,
    settings: Settings,
    subscriber: Subscriber,
    prefs: Preferences,
    *,
    ip: str = "",
    user_agent: str = "",
    source: str = "preferences page",
    now: datetime | None = None,
) -> PreferencesChange:
    """Apply the preferences form. Lists added here need no new opt-in: the link proves the
    mailbox, and a consent record is written, confirmed at once."""
    now = now or utcnow()
    name = _check_preferences(session, subscriber, prefs)
    current = {s.newsletter_id: s for s in subscriber.subscriptions}
    newsletters = {
        n.id: n
        for n in session.scalars(
            select(Newsletter).where(Newsletter.id.in_(prefs.newsletter_ids | set(current)))
        )
    }
    added, removed = _list_changes(current, prefs.newsletter_ids)
    if added and is_suppressed(session, subscriber.email):
        raise SubscriptionError(
            "This address is on our do-not-mail list, so we cannot add newsletters to it. "
            "Please contact us if that is a mistake."
        )

    subscriber.name = name
    subscriber.timezone = prefs.timezone
    subscriber.topics = sorted(set(prefs.topics), key=str.casefold)
    _join(session, subscriber, current, [newsletters[i] for i in added], now)
    _leave(current, removed, now)
    _set_frequencies(current, newsletters, prefs.frequencies)
    if added:
        # The link proves the mailbox: the consent is confirmed at once, no new opt-in.
        record_consent(
            session,
            subscriber,
            newsletter_slugs=[newsletters[i].slug for i in added],
            version=prefs.consent_version or settings.consent_version,
            text=prefs.consent_text,
            source=source,
            ip=ip,
            user_agent=user_agent,
            now=now,
            confirmed=True,
        )
        subscriber.confirmed_at = subscriber.confirmed_at or now
    _settle_status(subscriber)
    session.flush()
    return PreferencesChange(tuple(added), tuple(sorted(removed)))


def _list_changes(
    current: dict[int, Subscription], chosen: frozenset[int]
) -> tuple[list[int], list[int]]:
    """The lists the form joins (not active yet) and leaves (not already unsubscribed)."""
    added = [
        i
        for i in sorted(chosen)
        if i not in current or current[i].status != SubscriptionStatus.ACTIVE
    ]
    removed = [
        i
        for i, s in current.items()
        if i not in chosen and s.status != SubscriptionStatus.UNSUBSCRIBED
    ]
    return added, removed


def _check_preferences(session: Session, subscriber: Subscriber, prefs: Preferences) -> str:
    """Refuse a zone, topic or list the form never offered; return the cleaned name."""
    if not valid_timezone(prefs.timezone):
        raise SubscriptionError("Please choose a time zone from the list.")
    name = _clean_name(prefs.name)
    allowed_topics = set(available_topics(session))
    unknown = [t for t in prefs.topics if t not in allowed_topics]
    if unknown:
        raise SubscriptionError(f"We have no topic called {unknown[0][:40]!r}.")
    allowed_ids = {n.id for n in choosable_newsletters(session, subscriber.id)}
    if not prefs.newsletter_ids <= allowed_ids:
        raise UnknownNewsletter("One of the chosen newsletters does not exist.")
    return name


def _join(
    session: Session,
    subscriber: Subscriber,
    current: dict[int, Subscription],
    newsletters: list[Newsletter],
    now: datetime,
) -> None:
    """Activate these lists for the reader, creating the subscriptions they never had."""
    for newsletter in newsletters:
        sub = _subscription_to(session, subscriber, current, newsletter, now)
        sub.status = SubscriptionStatus.ACTIVE
        sub.confirmed_at = sub.confirmed_at or now
        sub.unsubscribed_at = None


def _subscription_to(
    session: Session,
    subscriber: Subscriber,
    current: dict[int, Subscription],
    newsletter: Newsletter,
    now: datetime,
) -> Subscription:
    """The reader's subscription row for a list, created (at its default frequency) if new."""
    sub = current.get(newsletter.id)
    if sub is None:
        sub = Subscription(
            subscriber_id=subscriber.id,
            newsletter_id=newsletter.id,
            frequency=newsletter.default_frequency,
            created_at=now,
        )
        session.add(sub)
        subscriber.subscriptions.append(sub)
        current[newsletter.id] = sub
    return sub


def _leave(current: dict[int, Subscription], newsletter_ids: list[int], now: datetime) -> None:
    """Unsubscribe the reader from these lists (a pause ends with them)."""
    for newsletter_id in newsletter_ids:
        sub = current[newsletter_id]
        sub.status = SubscriptionStatus.UNSUBSCRIBED
        sub.unsubscribed_at = now
        sub.paused_until = None


def _set_frequencies(
    current: dict[int, Subscription],
    newsletters: dict[int, Newsletter],
    frequencies: dict[int, Frequency],
) -> None:
    """Set the chosen frequency on the reader's digest subscriptions (campaigns have none)."""
    for newsletter_id, frequency in frequencies.items():
        sub = current.get(newsletter_id)
        newsletter = newsletters.get(newsletter_id)
        if sub is not None and newsletter and newsletter.kind == NewsletterKind.DIGEST:
            sub.frequency = frequency


def _clean_name(raw: str) -> str:
    """A display name: trimmed, single-spaced, no control characters, bounded."""
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in raw):
        raise SubscriptionError("Your name contains characters that are not allowed.")
    name = " ".join(raw.split())
    if len(name) > NAME_MAX:
        raise SubscriptionError(f"Please keep your name under {NAME_MAX} characters.")
    return name


# --- housekeeping --------------------------------------------------------------------------------


def purge_pending(session: Session, settings: Settings, now: datetime | None = None) -> PurgeResult:
    """Forget signups nobody confirmed within the confirmation expiry.

    Deletes pending readers (with their pending subscriptions and consent rows) whose last signup
    is older than the expiry, pending subscriptions of other readers past it, unconfirmed consent
    records past it (they are personal data held without consent) and old signup-mail log rows.
    A reader who signed up again recently keeps everything until that newer link expires too.
    """
    now = now or utcnow()
    cutoff = now - timedelta(days=settings.confirm_expiry_days)
    recent_signup = select(ConsentRecord.subscriber_id).where(
        ConsentRecord.confirmed_at.is_(None), ConsentRecord.signup_at >= cutoff
    )
    stale_ids = list(
        session.scalars(
            select(Subscriber.id).where(
                Subscriber.status == SubscriberStatus.PENDING,
                Subscriber.confirmed_at.is_(None),
                Subscriber.created_at < cutoff,
                Subscriber.id.not_in(recent_signup),
            )
        )
    )
    subscribers, subscriptions, consent_records = _delete_readers(session, stale_ids)
    subscriptions += _count(
        session.execute(
            delete(Subscription).where(
                Subscription.status == SubscriptionStatus.PENDING,
                Subscription.created_at < cutoff,
                Subscription.subscriber_id.not_in(recent_signup),
            )
        )
    )
    consent_records += _count(
        session.execute(
            delete(ConsentRecord).where(
                ConsentRecord.confirmed_at.is_(None), ConsentRecord.signup_at < cutoff
            )
        )
    )
    mail_log = _count(
        session.execute(delete(SignupMailLog).where(SignupMailLog.sent_at < now - MAIL_LOG_KEEP))
    )
    session.expire_all()
    return PurgeResult(subscribers, subscriptions, consent_records, mail_log)


def _delete_readers(session: Session, subscriber_ids: list[int]) -> tuple[int, int, int]:
    """Delete readers, their subscriptions and consent records (chunked); how many of each."""
    subscribers = subscriptions = consent_records = 0
    for start in range(0, len(subscriber_ids), 500):
        chunk = subscriber_ids[start : start + 500]
        consent_records += _count(
            session.execute(delete(ConsentRecord).where(ConsentRecord.subscriber_id.in_(chunk)))
        )
        subscriptions += _count(
            session.execute(delete(Subscription).where(Subscription.subscriber_id.in_(chunk)))
        )
        subscribers += _count(session.execute(delete(Subscriber).where(Subscriber.id.in_(chunk))))
    return subscribers, subscriptions, consent_records


def _count(result: object) -> int:
    """Rows a bulk DELETE touched."""
    rowcount = getattr(result, "rowcount", 0)
    return int(rowcount or 0)


# --- signup mail cap ----------------------------------------------------------------------------


def signup_mails_sent(session: Session, email: str, now: datetime | None = None) -> int:
    """How many signup-triggered mails went to this address in the last 24 hours."""
    since = (now or utcnow()) - timedelta(days=1)
    count = session.scalar(
        select(func.count(SignupMailLog.id)).where(
            SignupMailLog.email_hash == email_hash(email), SignupMailLog.sent_at >= since
        )
    )
    return int(count or 0)


def log_signup_mail(session: Session, email: str, kind: str, now: datetime | None = None) -> None:
    """Count one signup-triggered mail towards the address's daily cap."""
    session.add(
        SignupMailLog(email_hash=email_hash(email), kind=kind[:20], sent_at=now or utcnow())
    )
    session.flush()


def subscriptions_of(
    session: Session, subscriber_id: int
) -> Sequence[tuple[Subscription, Newsletter]]:
    """A reader's subscriptions with their lists, in list order (for pages and mails)."""
    rows = session.execute(
        select(Subscription, Newsletter)
        .join(Newsletter, Newsletter.id == Subscription.newsletter_id)
        .where(Subscription.subscriber_id == subscriber_id)
        .order_by(Newsletter.position, Newsletter.id)
    )
    return [(sub, newsletter) for sub, newsletter in rows]
