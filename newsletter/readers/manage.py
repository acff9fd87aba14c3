"""What a mailed link lets its holder do: leave one list or all, pause, switch, undo.

An unsubscribe link keeps letting its holder leave after "log out all links" (RFC 8058 expects
it to keep working, and leaving is what the reader would want from an old mail), but for
anything else the link's version must be the reader's current one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from newsletter.hooks import events
from newsletter.readers.addresses import email_key
from newsletter.readers.subscriptions import (
    PAUSE_WEEKS,
    InvalidLink,
    SubscriptionError,
    in_scope,
    settle_status,
)
from newsletter.readers.suppression import is_suppressed
from newsletter.readers.tokens import (
    ManageClaim,
    TokenError,
    UndoClaim,
    address_digest,
    make_undo_token,
    read_data_token,
    read_manage_token,
    read_undo_token,
)
from newsletter.settings import Settings
from newsletter.store.db import utcnow
from newsletter.store.models import (
    Frequency,
    Newsletter,
    NewsletterKind,
    Subscriber,
    SubscriberStatus,
    SubscriptionStatus,
)


@dataclass(frozen=True)
class ManageLink:
    """A verified preferences/unsubscribe link: the reader and, optionally, one list.

    ``stale`` links (signed before the reader logged out all links) may only leave.
    """

    subscriber: Subscriber
    newsletter_id: int | None
    newsletter: Newsletter | None
    stale: bool = False


NOT_VALID = "This link is not valid. Please copy the whole link from one of our mails."
NO_LONGER = "This link is no longer in use. Please use the link in a more recent mail from us."


def read_manage_link(session: Session, settings: Settings, token: str) -> ManageLink:
    """Verify a preferences link (or any link but to leave), or raise :class:`InvalidLink`."""
    link = read_unsubscribe_link(session, settings, token)
    if link.stale:
        raise InvalidLink(NO_LONGER, 404)
    return link


def read_unsubscribe_link(session: Session, settings: Settings, token: str) -> ManageLink:
    """Verify a link used to leave; an outdated version still may (``stale``), nothing else."""
    try:
        claim = read_manage_token(settings.secret_key, token)
    except TokenError as exc:
        raise InvalidLink(NOT_VALID, 400) from exc
    subscriber = _holder(session, claim.subscriber_id, claim.address)
    newsletter = (
        session.get(Newsletter, claim.newsletter_id) if claim.newsletter_id is not None else None
    )
    if claim.version > subscriber.token_version:
        raise InvalidLink(NO_LONGER, 404)  # never issued: versions only go up
    stale = claim.version < subscriber.token_version
    return ManageLink(subscriber, claim.newsletter_id, newsletter, stale)


def read_data_link(session: Session, settings: Settings, token: str) -> Subscriber:
    """The reader a mailed "your data" link is for, or :class:`InvalidLink` (410 after an hour)."""
    try:
        claim = read_data_token(settings.secret_key, token)
    except TokenError as exc:
        if exc.expired:
            raise InvalidLink(
                "This link to your data has expired: it works for one hour. Please ask for a "
                "new one from your preferences page.",
                410,
            ) from exc
        raise InvalidLink(NOT_VALID, 400) from exc
    subscriber = _holder(session, claim.subscriber_id, claim.address)
    if subscriber.token_version != claim.version:
        raise InvalidLink(NO_LONGER, 404)
    return subscriber


def holds(subscriber: Subscriber, claim: ManageClaim | UndoClaim) -> bool:
    """True when a claim names this reader at this address and current version."""
    return (
        claim.subscriber_id == subscriber.id
        and claim.version == subscriber.token_version
        and claim.address == address_digest(email_key(subscriber.email))
    )


def _holder(session: Session, subscriber_id: int, address: str) -> Subscriber:
    """The reader a token names, if its address is still the one it was signed for."""
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None or address != address_digest(email_key(subscriber.email)):
        raise InvalidLink(NO_LONGER, 404)
    return subscriber


def unsubscribe(
    session: Session, subscriber: Subscriber, newsletter_id: int | None, now: datetime | None = None
) -> list[int]:
    """Leave one list (all with None) and return the ids left; leaving the last → unsubscribed."""
    now = now or utcnow()
    left: list[int] = []
    for sub in subscriber.subscriptions:
        if in_scope(sub, newsletter_id) and sub.status != SubscriptionStatus.UNSUBSCRIBED:
            sub.status = SubscriptionStatus.UNSUBSCRIBED
            sub.unsubscribed_at = now
            sub.paused_until = None
            left.append(sub.newsletter_id)
    if newsletter_id is None and subscriber.status != SubscriberStatus.BOUNCED:
        subscriber.status = SubscriberStatus.UNSUBSCRIBED
    else:
        settle_status(subscriber)
    if left:
        events.subscriber_unsubscribed(session, subscriber, left)
    session.flush()
    return left


def log_out_all_links(session: Session, subscriber: Subscriber) -> None:
    """Revoke every link we mailed this reader, but for leaving (bump the token version)."""
    subscriber.token_version = (subscriber.token_version or 0) + 1
    session.flush()


def undo_token(settings: Settings, subscriber: Subscriber, left: list[int]) -> str:
    """The token of the "undo" button shown right after leaving these lists (15 minutes)."""
    claim = UndoClaim(
        subscriber.id,
        subscriber.token_version,
        address_digest(email_key(subscriber.email)),
        tuple(sorted(left)),
    )
    return make_undo_token(settings.secret_key, claim)


def undo_unsubscribe(
    session: Session, settings: Settings, subscriber: Subscriber, token: str
) -> list[int]:
    """Put back the lists an unsubscribe just left, as its undo token names them.

    Only within the token's 15 minutes, only for this reader at its current version, and only
    lists the reader had confirmed; anything later needs a new confirmation by mail.
    """
    try:
        claim = read_undo_token(settings.secret_key, token)
    except TokenError as exc:
        if exc.expired:
            raise InvalidLink("It is too late to undo from this page.", 410) from exc
        raise InvalidLink(NOT_VALID, 400) from exc
    if not holds(subscriber, claim):
        raise InvalidLink(NO_LONGER, 404)
    if subscriber.status == SubscriberStatus.BOUNCED or is_suppressed(session, subscriber.email):
        return []
    wanted = set(claim.newsletter_ids)
    back = [
        s
        for s in subscriber.subscriptions
        if s.newsletter_id in wanted
        and s.status == SubscriptionStatus.UNSUBSCRIBED
        and s.confirmed_at is not None
    ]
    for sub in back:
        sub.status = SubscriptionStatus.ACTIVE
        sub.unsubscribed_at = None
    if back:
        subscriber.status = SubscriberStatus.ACTIVE
    session.flush()
    return sorted(s.newsletter_id for s in back)


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
        if in_scope(sub, newsletter_id) and sub.status == SubscriptionStatus.ACTIVE:
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
            in_scope(sub, newsletter_id)
            and sub.status == SubscriptionStatus.ACTIVE
            and sub.newsletter.kind == NewsletterKind.DIGEST
            and sub.frequency != frequency
        ):
            sub.frequency = frequency
            changed.append(sub.newsletter_id)
    session.flush()
    return changed
