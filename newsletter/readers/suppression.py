"""The suppression list: addresses never mailed again (bounces, complaints, "never mail me").

One reason is softer than the others: ``erased`` (:mod:`~newsletter.readers.erasure`). It keeps
every bulk send, import and editor away from an address whose reader asked to be forgotten, but
it does not stand between that person and a deliberate new signup: the signup form's
confirmation mail may go there, and only the click in it (a fresh double opt-in) lifts the
entry. Every other reason blocks signups too.
"""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from newsletter.readers.addresses import email_hash
from newsletter.store.models import (
    Suppression,
)

# The reason recorded when a reader is erased (see the module doc).
ERASED = "erased"


def suppress(session: Session, normalised_email: str, reason: str, detail: str = "") -> Suppression:
    """Put an address on the never-mail list (idempotent; the first reason is kept, but for
    ``erased``, the weakest, which any other reason replaces)."""
    key = email_hash(normalised_email)
    existing = session.scalar(select(Suppression).where(Suppression.email_hash == key))
    if existing is not None:
        if existing.reason == ERASED and reason != ERASED:
            existing.reason, existing.detail = reason[:40], detail
            session.flush()
        return existing
    row = Suppression(email_hash=key, reason=reason[:40], detail=detail)
    session.add(row)
    session.flush()
    return row


def is_suppressed(session: Session, email: str) -> bool:
    """True when an address must never be mailed (bounce, complaint, explicit request)."""
    key = email_hash(email)
    return session.scalar(select(Suppression.id).where(Suppression.email_hash == key)) is not None


def blocks_signup(session: Session, email: str) -> bool:
    """True when a signup of this address must lead to no mail: suppressed, but not by erasure."""
    key = email_hash(email)
    reason = session.scalar(select(Suppression.reason).where(Suppression.email_hash == key))
    return reason is not None and reason != ERASED


def lift_erasure(session: Session, email: str) -> bool:
    """Drop an erasure's suppression once the address confirmed a new signup; True if one was."""
    key = email_hash(email)
    result = session.execute(
        delete(Suppression).where(Suppression.email_hash == key, Suppression.reason == ERASED)
    )
    return bool(getattr(result, "rowcount", 0))


def list_suppressions(
    session: Session, *, before_id: int | None = None, limit: int = 50
) -> list[Suppression]:
    """Entries newest first, those with an id below ``before_id`` (a keyset page)."""
    query = select(Suppression).order_by(Suppression.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(Suppression.id < before_id)
    return list(session.scalars(query))
