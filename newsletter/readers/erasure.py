"""Erasing a reader (GDPR Art. 17), and an editor's unsubscribe and suppress.

:func:`erase` is the one implementation: the reader's own "erase my data" button (behind the
mailed one-hour data link, :mod:`newsletter.web.reader_links`), the ``newsletter subscribers
erase`` command and the console all call it. What it does, in one transaction:

* deletes the reader's row and every row that holds their address, name or what happened to
  their mail: subscriptions, consent records, deliveries (their SMTP answers may quote the
  address), bounces and complaints (``feedback_events``), and the per-reader post ledger;
* keeps the address's suppression hash (adding one with reason ``erased`` when there is none; a
  bounce or complaint keeps its own, stronger reason), so no bulk mail, import or editor
  reaches the address again;
* keeps a minimal, pseudonymised proof of each *confirmed* consent (:class:`ErasedConsent`: the
  address hash, the lists, the wording and its version, the source and the two times; no
  address, name, IP or browser), because Art. 7(1) asks us to be able to prove consent we relied
  on. It is deleted after ``NEWSLETTER_ERASED_CONSENT_DAYS`` (:func:`purge_erased_consents`).
  Unconfirmed signups were never consent and leave nothing;
* deletes the outbound webhook events about the reader (they carry the address) and sends a
  ``subscriber.erased`` event, holding only their id, so the site's own systems can erase them
  too (Art. 17(2)).

The exactly-once ledger: the reader's delivery rows go with them, so a send still running has
no row left to claim or re-queue for them, and a re-run fan-out cannot add one (its reader row is
gone). A mail that a batch had already taken in hand before the erasure committed may still
leave: at most that one, as if the erasure had come a moment later; none after it.

A new signup of the address later is a stranger's to the system: a new reader row, pending,
with a fresh confirmation mail; the ``erased`` suppression lets exactly that mail through and is
lifted only by the click in it (see :mod:`newsletter.readers.suppression`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import Delete

from newsletter.hooks.events import subscriber_erased
from newsletter.readers.addresses import email_hash, email_key
from newsletter.readers.manage import unsubscribe as leave
from newsletter.readers.subscriptions import UnknownNewsletter
from newsletter.readers.suppression import ERASED, suppress
from newsletter.settings import Settings
from newsletter.store.db import utcnow
from newsletter.store.models import (
    ConsentRecord,
    Delivery,
    ErasedConsent,
    FeedbackEvent,
    Newsletter,
    SentPost,
    Subscriber,
    Subscription,
    Suppression,
)

# The suppression reason of an editor's "never mail this address".
EDITOR = "editor"


class ReaderNotFound(LookupError):
    """No reader has that address; the message names it."""


@dataclass(frozen=True)
class ErasureResult:
    """What :func:`erase` removed and kept."""

    subscriptions: int
    consent_records: int
    deliveries: int
    feedback_events: int
    sent_posts: int
    consents_kept: int
    suppression_reason: str


def find_reader(session: Session, normalised_email: str) -> Subscriber:
    """The reader with this (normalised) address, or :class:`ReaderNotFound`."""
    subscriber = session.scalar(
        select(Subscriber).where(Subscriber.email_key == email_key(normalised_email))
    )
    if subscriber is None:
        raise ReaderNotFound(f"no subscriber with address {normalised_email}")
    return subscriber


def erase(session: Session, subscriber: Subscriber, now: datetime | None = None) -> ErasureResult:
    """Erase a reader as the module doc says; the caller commits. The object is gone after."""
    now = now or utcnow()
    session.flush()
    sid = subscriber.id
    address_hash = email_hash(subscriber.email)
    kept = _keep_consent_proof(session, sid, address_hash, now)
    suppression = suppress(session, subscriber.email, ERASED)
    counts = [
        _delete(session, delete(model).where(model.subscriber_id == sid))
        for model in (Delivery, FeedbackEvent, SentPost, ConsentRecord, Subscription)
    ]
    session.execute(delete(Subscriber).where(Subscriber.id == sid))
    subscriber_erased(session, sid)  # their events go too; the site's systems are told
    session.flush()
    if subscriber in session:
        session.expunge(subscriber)
    deliveries, feedback, sent_posts, consents, subscriptions = counts
    return ErasureResult(
        subscriptions=subscriptions,
        consent_records=consents,
        deliveries=deliveries,
        feedback_events=feedback,
        sent_posts=sent_posts,
        consents_kept=kept,
        suppression_reason=suppression.reason,
    )


def _keep_consent_proof(
    session: Session, subscriber_id: int, address_hash: str, now: datetime
) -> int:
    """Copy the confirmed consent records, pseudonymised, into ``erased_consents``."""
    records = session.scalars(
        select(ConsentRecord)
        .where(
            ConsentRecord.subscriber_id == subscriber_id, ConsentRecord.confirmed_at.is_not(None)
        )
        .order_by(ConsentRecord.id)
    ).all()
    for record in records:
        session.add(
            ErasedConsent(
                email_hash=address_hash,
                newsletter_slugs=list(record.newsletter_slugs),
                consent_text_version=record.consent_text_version,
                consent_text=record.consent_text,
                source=record.source,
                signup_at=record.signup_at,
                confirmed_at=record.confirmed_at,
                erased_at=now,
            )
        )
    return len(records)


def _delete(session: Session, statement: Delete) -> int:
    """Run a bulk DELETE; the rows it removed. (Rows of it loaded in the session are not
    looked for: the caller expunges the reader, the only object it hands out.)"""
    result = session.execute(statement, execution_options={"synchronize_session": False})
    return int(getattr(result, "rowcount", 0) or 0)


def erased_consents(session: Session, normalised_email: str) -> list[ErasedConsent]:
    """The pseudonymised consent proof kept for an erased address, oldest first."""
    return list(
        session.scalars(
            select(ErasedConsent)
            .where(ErasedConsent.email_hash == email_hash(normalised_email))
            .order_by(ErasedConsent.signup_at, ErasedConsent.id)
        )
    )


def purge_erased_consents(session: Session, settings: Settings, now: datetime | None = None) -> int:
    """Delete the consent proof of readers erased longer ago than the retention; how many."""
    cutoff = (now or utcnow()) - timedelta(days=settings.erased_consent_days)
    return _delete(session, delete(ErasedConsent).where(ErasedConsent.erased_at < cutoff))


def unsubscribe_reader(
    session: Session, subscriber: Subscriber, newsletter_slug: str | None = None
) -> list[str]:
    """An editor's unsubscribe: from one list (by slug) or all; the slugs left."""
    newsletter_id: int | None = None
    if newsletter_slug is not None:
        newsletter_id = session.scalar(
            select(Newsletter.id).where(Newsletter.slug == newsletter_slug)
        )
        if newsletter_id is None:
            raise UnknownNewsletter(f"no newsletter with slug {newsletter_slug!r}")
    left = leave(session, subscriber, newsletter_id)
    if not left:
        return []
    return list(
        session.scalars(
            select(Newsletter.slug).where(Newsletter.id.in_(left)).order_by(Newsletter.slug)
        )
    )


def suppress_reader(session: Session, normalised_email: str, detail: str = "") -> Suppression:
    """An editor's "never mail this address": suppressed (reason ``editor``), and, if it is a
    reader's, unsubscribed from every list. Works for addresses we do not hold too."""
    row = suppress(session, normalised_email, EDITOR, detail)  # replaces an erasure's entry
    subscriber = session.scalar(
        select(Subscriber).where(Subscriber.email_key == email_key(normalised_email))
    )
    if subscriber is not None:
        leave(session, subscriber, None)
    return row
