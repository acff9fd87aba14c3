"""The consent ledger: what a reader agreed to, when, where, and a per-reader JSON export.

Every signup writes one :class:`ConsentRecord` (the exact text shown, its version, the lists, the
signup's time, IP and browser); confirming the mail fills in the confirmation half. The export is
what a reader gets from "download my data" and what ``newsletter export`` prints.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.readers.addresses import email_hash, email_key
from newsletter.store.db import utcnow
from newsletter.store.models import (
    ConsentRecord,
    Newsletter,
    Subscriber,
    Subscription,
    Suppression,
    as_dict,
)

# Limits of the ledger's columns; longer values are cut rather than refused (a browser's user
# agent string is not the reader's fault).
_SOURCE_MAX = 500
_UA_MAX = 500
_IP_MAX = 64

# What a consent record proves, as a reader's export and the console show it.
CONSENT_FIELDS = (
    "newsletter_slugs",
    "consent_text_version",
    "consent_text",
    "source",
    "signup_at",
    "signup_ip",
    "signup_user_agent",
    "confirmed_at",
    "confirm_ip",
    "confirm_user_agent",
)


def new_nonce() -> str:
    """A random, unguessable nonce binding one confirmation mail to one consent record."""
    return secrets.token_urlsafe(24)


def record_consent(
    session: Session,
    subscriber: Subscriber,
    *,
    newsletter_slugs: Sequence[str],
    version: str,
    text: str,
    source: str = "",
    ip: str = "",
    user_agent: str = "",
    now: datetime | None = None,
    confirmed: bool = False,
    name: str = "",
    flush: bool = True,
) -> ConsentRecord:
    """Add a consent record (confirmed at once when the reader already proved the mailbox).

    ``flush=False`` leaves the INSERT to the caller's next flush (an import adds thousands).
    """
    now = now or utcnow()
    record = ConsentRecord(
        subscriber_id=subscriber.id,
        newsletter_slugs=list(newsletter_slugs),
        consent_text_version=version[:64],
        consent_text=text,
        source=source[:_SOURCE_MAX],
        signup_at=now,
        signup_ip=ip[:_IP_MAX],
        signup_user_agent=user_agent[:_UA_MAX],
        name=name,
        nonce=new_nonce(),
    )
    if confirmed:
        record.confirmed_at = now
        record.confirm_ip = ip[:_IP_MAX]
        record.confirm_user_agent = user_agent[:_UA_MAX]
    session.add(record)
    if flush:
        session.flush()
    return record


def mark_confirmed(
    record: ConsentRecord, *, ip: str, user_agent: str, now: datetime | None = None
) -> bool:
    """Fill in the confirmation half once; False when it was already confirmed."""
    if record.confirmed_at is not None:
        return False
    record.confirmed_at = now or utcnow()
    record.confirm_ip = ip[:_IP_MAX]
    record.confirm_user_agent = user_agent[:_UA_MAX]
    return True


def export_subscriber(session: Session, email: str) -> dict[str, Any] | None:
    """Everything we hold about one address as JSON-ready data, or None if we hold nothing."""
    subscriber = session.scalar(select(Subscriber).where(Subscriber.email_key == email_key(email)))
    if subscriber is None:
        return None
    return export_subscriber_by_id(session, subscriber.id)


def export_subscriber_by_id(session: Session, subscriber_id: int) -> dict[str, Any] | None:
    """The export for one subscriber id (the preferences page's "download my data")."""
    subscriber = session.get(Subscriber, subscriber_id)
    if subscriber is None:
        return None
    subscriptions = _export_subscriptions(session, subscriber.id)
    consent = _export_consent_records(session, subscriber.id)
    suppression = session.scalar(
        select(Suppression).where(Suppression.email_hash == email_hash(subscriber.email))
    )
    return {
        "exported_at": utcnow().isoformat(),
        "subscriber": as_dict(
            subscriber,
            "email",
            "name",
            "status",
            "timezone",
            "topics",
            "created_at",
            "confirmed_at",
            "updated_at",
        ),
        "subscriptions": subscriptions,
        "consent_records": consent,
        "suppressed": (
            as_dict(suppression, "reason", "created_at") if suppression is not None else None
        ),
    }


def _export_subscriptions(session: Session, subscriber_id: int) -> list[dict[str, Any]]:
    """The reader's subscriptions with their newsletter, in list order, for the export."""
    rows = session.execute(
        select(Subscription, Newsletter)
        .join(Newsletter, Newsletter.id == Subscription.newsletter_id)
        .where(Subscription.subscriber_id == subscriber_id)
        .order_by(Newsletter.position, Newsletter.id)
    ).all()
    return [
        {
            "newsletter": {"slug": newsletter.slug, "name": newsletter.name},
            **as_dict(
                sub,
                "status",
                "frequency",
                "paused_until",
                "created_at",
                "confirmed_at",
                "unsubscribed_at",
            ),
        }
        for sub, newsletter in rows
    ]


def _export_consent_records(session: Session, subscriber_id: int) -> list[dict[str, Any]]:
    """The reader's consent records, oldest signup first, for the export."""
    records = session.scalars(
        select(ConsentRecord)
        .where(ConsentRecord.subscriber_id == subscriber_id)
        .order_by(ConsentRecord.signup_at, ConsentRecord.id)
    ).all()
    # The nonce is left out: it is a capability half, not information about the reader.
    return [as_dict(record, *CONSENT_FIELDS) for record in records]
