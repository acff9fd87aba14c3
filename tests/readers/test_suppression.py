"""The suppression list: idempotent, keyed on the address whatever its case."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.readers.suppression import is_suppressed, suppress
from newsletter.store.models import (
    Suppression,
)


def test_suppression_helpers_are_idempotent_and_case_insensitive(db: Session) -> None:
    first = suppress(db, "Someone@Example.com", "bounce", "550 no such user")
    second = suppress(db, "someone@example.com", "complaint")
    db.commit()
    assert first.id == second.id and second.reason == "bounce"
    assert is_suppressed(db, "SOMEONE@example.com")
    assert not is_suppressed(db, "other@example.com")
    assert db.scalar(select(Suppression.email_hash)) != "someone@example.com"
