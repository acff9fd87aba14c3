"""What the reader's forms may offer: lists by slug or id, topics and time zones."""

from __future__ import annotations

import json
import zoneinfo
from collections.abc import Iterable
from functools import lru_cache

from sqlalchemy import Text, cast, select
from sqlalchemy.orm import Session

from newsletter.readers.subscriptions import SubscriptionError, UnknownNewsletter
from newsletter.store.models import (
    Newsletter,
    Post,
)


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
