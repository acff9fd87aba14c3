"""The suppression list: idempotent, keyed on the address whatever its case."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.readers.suppression import is_suppressed, list_suppressions, suppress
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


def test_the_list_pages_newest_first(db: Session) -> None:
    rows = [suppress(db, f"s{n}@example.com", "editor") for n in range(5)]
    db.commit()
    first = list_suppressions(db, limit=2)
    assert [r.id for r in first] == [rows[4].id, rows[3].id]
    rest = list_suppressions(db, before_id=first[-1].id, limit=10)
    assert [r.id for r in rest] == [rows[2].id, rows[1].id, rows[0].id]
