"""The preferences form: lists, frequency, topics, name and time zone, applied at once.

The link proves the mailbox to a reader who still gets our mails, so lists added here need no new
opt-in. A reader who left everything is different: the link may sit in an old or forwarded mail,
so lists ticked again wait for a new confirmation by mail (:attr:`PreferencesChange.consent_id`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.hooks import events
from newsletter.readers.choices import available_topics, valid_timezone
from newsletter.readers.consent import record_consent
from newsletter.readers.newsletters import choosable_newsletters
from newsletter.readers.subscriptions import (
    SubscriptionError,
    UnknownNewsletter,
    clean_name,
    settle_status,
    subscription_to,
)
from newsletter.readers.suppression import is_suppressed
from newsletter.settings import Settings
from newsletter.store.db import utcnow
from newsletter.store.models import (
    Frequency,
    Newsletter,
    NewsletterKind,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
)


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
class Consent:
    """What a reader agreed to and where, for the consent record of lists they add."""

    text: str
    version: str = ""
    source: str = "preferences page"
    ip: str = ""
    user_agent: str = ""


_SUPPRESSED = (
    "This address is on our do-not-mail list, so we cannot add newsletters to it. "
    "Please contact us if that is a mistake."
)


@dataclass(frozen=True)
class PreferencesChange:
    """Lists added and removed by a preferences update, and those waiting for a confirmation."""

    added: tuple[int, ...]
    removed: tuple[int, ...]
    to_confirm: tuple[int, ...] = ()
    consent_id: int | None = None  # the consent record whose confirmation mail is to be sent


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
    """Apply the preferences form; lists added by a reader who left everything wait for a
    confirmation (see the module doc), others are joined with a consent record confirmed at once."""
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
        raise SubscriptionError(_SUPPRESSED)

    subscriber.name = name
    subscriber.timezone = prefs.timezone
    subscriber.topics = sorted(set(prefs.topics), key=str.casefold)
    consent = Consent(prefs.consent_text, prefs.consent_version, source, ip, user_agent)
    change = _add_lists(
        session, settings, subscriber, current, [newsletters[i] for i in added], consent, now
    )
    _leave(current, removed, now)
    _set_frequencies(current, newsletters, prefs.frequencies)
    settle_status(subscriber)
    if removed:
        events.subscriber_unsubscribed(session, subscriber, sorted(removed))
    session.flush()
    return replace(change, removed=tuple(sorted(removed)))


def rejoin(
    session: Session,
    settings: Settings,
    subscriber: Subscriber,
    newsletter_id: int | None,
    consent: Consent,
    now: datetime | None = None,
) -> PreferencesChange:
    """Subscribe again, from the unsubscribe page, to a list left before (or all, with None).

    The same rule as the preferences page: a reader who left everything gets a confirmation mail.
    """
    now = now or utcnow()
    current = {s.newsletter_id: s for s in subscriber.subscriptions}
    allowed = {n.id: n for n in choosable_newsletters(session, subscriber.id)}
    wanted = [
        allowed[i]
        for i, sub in current.items()
        if i in allowed
        and (newsletter_id is None or i == newsletter_id)
        and sub.status == SubscriptionStatus.UNSUBSCRIBED
        and sub.confirmed_at is not None
    ]
    if wanted and is_suppressed(session, subscriber.email):
        raise SubscriptionError(_SUPPRESSED)
    change = _add_lists(session, settings, subscriber, current, wanted, consent, now)
    settle_status(subscriber)
    session.flush()
    return change


def rejoinable(subscriber: Subscriber, newsletter_id: int | None) -> bool:
    """True when :func:`rejoin` has a list to put back for this link's scope."""
    return any(
        (newsletter_id is None or s.newsletter_id == newsletter_id)
        and s.status == SubscriptionStatus.UNSUBSCRIBED
        and s.confirmed_at is not None
        for s in subscriber.subscriptions
    )


def _add_lists(
    session: Session,
    settings: Settings,
    subscriber: Subscriber,
    current: dict[int, Subscription],
    newsletters: list[Newsletter],
    consent: Consent,
    now: datetime,
) -> PreferencesChange:
    """Join these lists at once, or, for a reader who left everything, record the consent
    unconfirmed so that only the reader's click in a confirmation mail brings them back."""
    if not newsletters:
        return PreferencesChange((), ())
    confirm_first = subscriber.status != SubscriberStatus.ACTIVE
    if not confirm_first:
        _join(session, subscriber, current, newsletters, now)
        subscriber.confirmed_at = subscriber.confirmed_at or now
    record = record_consent(
        session,
        subscriber,
        newsletter_slugs=[n.slug for n in newsletters],
        version=consent.version or settings.consent_version,
        text=consent.text,
        source=consent.source,
        ip=consent.ip,
        user_agent=consent.user_agent,
        now=now,
        confirmed=not confirm_first,
    )
    ids = tuple(sorted(n.id for n in newsletters))
    if confirm_first:
        return PreferencesChange((), (), ids, record.id)
    return PreferencesChange(ids, ())


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
    name = clean_name(prefs.name)
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
        sub = subscription_to(session, subscriber, current, newsletter, now)
        sub.status = SubscriptionStatus.ACTIVE
        sub.confirmed_at = sub.confirmed_at or now
        sub.unsubscribed_at = None


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


def edit_reader(
    session: Session,
    subscriber: Subscriber,
    *,
    name: str | None = None,
    timezone: str | None = None,
    topics: tuple[str, ...] | None = None,
    frequencies: dict[str, Frequency] | None = None,
) -> None:
    """An editor's change of a reader's name, time zone, topics or digest frequency per list
    (by slug); None keeps a field. Lists and statuses stay as they are: joining takes the
    reader's own consent. SubscriptionError names what is refused; the caller commits."""
    if timezone is not None and not valid_timezone(timezone):
        raise SubscriptionError(f"no time zone called {timezone[:64]!r}")
    if topics is not None:
        allowed = set(available_topics(session))
        unknown = [t for t in topics if t not in allowed]
        if unknown:
            raise SubscriptionError(f"no topic called {unknown[0][:40]!r}")
    current = {s.newsletter.slug: s for s in subscriber.subscriptions}
    for slug in frequencies or {}:
        sub = current.get(slug)
        if sub is None:
            raise UnknownNewsletter(f"the reader is not on a newsletter {slug[:64]!r}")
        if sub.newsletter.kind != NewsletterKind.DIGEST:
            raise SubscriptionError(f"{slug!r} is a campaign list: it has no frequency")
    if name is not None:
        subscriber.name = clean_name(name)
    if timezone is not None:
        subscriber.timezone = timezone
    if topics is not None:
        subscriber.topics = sorted(set(topics), key=str.casefold)
    for slug, frequency in (frequencies or {}).items():
        current[slug].frequency = frequency
    session.flush()
