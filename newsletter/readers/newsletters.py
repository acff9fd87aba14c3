"""The newsletters: the lists readers choose, which of them a form offers, and creating them.

One home for the rules every adapter shares: a slug's shape, which list a bare signup joins,
and which lists a reader may choose on the preferences page.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from newsletter.store.models import (
    Frequency,
    Newsletter,
    NewsletterKind,
    Subscriber,
    SubscriberStatus,
    Subscription,
    SubscriptionStatus,
)

SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


class NewsletterError(ValueError):
    """The newsletter cannot be created as asked; the message says why."""


@dataclass(frozen=True)
class NewsletterRow:
    """One line of the overview."""

    slug: str
    name: str
    kind: str
    frequency: str
    active_subscribers: int


def validate_slug(slug: str) -> str:
    """Return the slug if it is lowercase letters, digits and single hyphens (max 64)."""
    if not slug or len(slug) > 64 or not SLUG.match(slug):
        raise NewsletterError(
            f"invalid slug {slug!r}: use lowercase letters, digits and hyphens, e.g. 'daily' "
            "or 'special-offers' (at most 64 characters)"
        )
    return slug


def create_newsletter(
    db: Session,
    slug: str,
    name: str,
    *,
    description: str = "",
    kind: NewsletterKind = NewsletterKind.DIGEST,
    frequency: Frequency = Frequency.DAILY,
    categories: Sequence[str] = (),
    public: bool = True,
) -> Newsletter:
    """Add a newsletter; NewsletterError for a bad or taken slug or an empty name.

    A list that is not ``public`` is on no signup form; readers are added to it by hand.
    """
    validate_slug(slug)
    _check_name(name)
    if db.scalar(select(Newsletter.id).where(Newsletter.slug == slug)) is not None:
        raise NewsletterError(f"a newsletter with slug {slug!r} already exists")
    position = db.scalar(select(func.coalesce(func.max(Newsletter.position), 0))) or 0
    row = Newsletter(
        slug=slug,
        name=name.strip(),
        description=description.strip(),
        kind=kind,
        default_frequency=frequency,
        categories=list(dict.fromkeys(c for c in categories if c)),
        position=position + 1,
        is_public=public,
    )
    db.add(row)
    try:
        db.flush()
    except IntegrityError:  # created by someone else in the meantime
        db.rollback()
        raise NewsletterError(f"a newsletter with slug {slug!r} already exists") from None
    return row


def _check_name(name: str) -> None:
    """Refuse an empty, overlong or multi-line name."""
    if not name.strip():
        raise NewsletterError("a newsletter needs a name, e.g. --name 'Daily digest'")
    if len(name.strip()) > 200:
        raise NewsletterError("the name is longer than 200 characters")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        # The name goes into every mail's List-Id header: a line break there is an injection.
        raise NewsletterError("the name must be one line without control characters")


def update_newsletter(
    newsletter: Newsletter,
    *,
    name: str | None = None,
    description: str | None = None,
    frequency: Frequency | None = None,
    categories: Sequence[str] | None = None,
    public: bool | None = None,
) -> Newsletter:
    """Change what is given (None: keep it), by the rules of :func:`create_newsletter`; the
    caller commits. The slug and the kind stay: issues, links and List-Ids name them."""
    if name is not None:
        _check_name(name)
        newsletter.name = name.strip()
    if description is not None:
        newsletter.description = description.strip()
    if frequency is not None:
        newsletter.default_frequency = frequency
    if categories is not None:
        newsletter.categories = list(dict.fromkeys(c for c in categories if c))
    if public is not None:
        newsletter.is_public = public
    return newsletter


def find_newsletter(db: Session, slug: str, *, lock: bool = False) -> Newsletter | None:
    """The newsletter with this slug, or None; ``lock``: its row locked until the transaction
    ends (PostgreSQL), so that no other edit lands between a check and an update."""
    query = select(Newsletter).where(Newsletter.slug == slug)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    return db.scalar(query)


def _active_counts() -> Any:
    """Confirmed, active readers per list, as a subquery (newsletter_id, n)."""
    return (
        select(Subscription.newsletter_id, func.count().label("n"))
        .join(Subscriber, Subscriber.id == Subscription.subscriber_id)
        .where(
            Subscription.status == SubscriptionStatus.ACTIVE,
            Subscriber.status == SubscriberStatus.ACTIVE,
        )
        .group_by(Subscription.newsletter_id)
        .subquery()
    )


def newsletter_page(
    db: Session, *, after: tuple[int, int] | None = None, limit: int = 50, slug: str | None = None
) -> list[tuple[Newsletter, int]]:
    """Newsletters in display order (position, id) after the ``after`` key, at most ``limit``,
    each with its count of confirmed, active readers; only the one with ``slug`` if given."""
    active = _active_counts()
    query = select(Newsletter, func.coalesce(active.c.n, 0)).outerjoin(
        active, active.c.newsletter_id == Newsletter.id
    )
    if slug is not None:
        query = query.where(Newsletter.slug == slug)
    if after is not None:
        query = query.where(tuple_(Newsletter.position, Newsletter.id) > tuple_(*after))
    query = query.order_by(Newsletter.position, Newsletter.id).limit(limit)
    return [(n, int(count)) for n, count in db.execute(query)]


def newsletter_rows(db: Session) -> list[NewsletterRow]:
    """Every newsletter in display order, with its count of confirmed, active readers."""
    active = _active_counts()
    query = (
        select(Newsletter, func.coalesce(active.c.n, 0))
        .outerjoin(active, active.c.newsletter_id == Newsletter.id)
        .order_by(Newsletter.position, Newsletter.id)
    )
    return [
        NewsletterRow(n.slug, n.name, n.kind.value, n.default_frequency.value, int(count))
        for n, count in db.execute(query)
    ]


def public_newsletters(session: Session) -> list[Newsletter]:
    """Lists open to signups, in the order the signup form shows them."""
    return list(
        session.scalars(
            select(Newsletter)
            .where(Newsletter.is_public.is_(True))
            .order_by(Newsletter.position, Newsletter.id)
        )
    )


def default_signup_newsletter(session: Session) -> Newsletter | None:
    """The list a signup that names none joins: the first public list in the form's order."""
    lists = public_newsletters(session)
    return lists[0] if lists else None


def choosable_newsletters(session: Session, subscriber_id: int) -> list[Newsletter]:
    """The lists a reader may choose: every public list, plus private ones they are already on."""
    lists = public_newsletters(session)
    known = {n.id for n in lists}
    lists += [
        n
        for n in session.scalars(
            select(Newsletter)
            .join(Subscription, Subscription.newsletter_id == Newsletter.id)
            .where(Subscription.subscriber_id == subscriber_id)
        )
        if n.id not in known
    ]
    return sorted(lists, key=lambda n: (n.position, n.id))


def newsletter_names(session: Session, ids: Iterable[int]) -> list[str]:
    """The names of these lists, in the form's order."""
    wanted = list(ids)
    if not wanted:
        return []
    rows = session.scalars(
        select(Newsletter)
        .where(Newsletter.id.in_(wanted))
        .order_by(Newsletter.position, Newsletter.id)
    )
    return [n.name for n in rows]
