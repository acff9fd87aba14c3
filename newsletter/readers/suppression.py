"""The suppression list: addresses never mailed again (bounces, complaints, "never mail me")."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.readers.addresses import email_hash
from newsletter.store.models import (
    Suppression,
)


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
