"""What the reader's forms may offer: lists by slug or id, topics and time zones."""

from __future__ import annotations

import json
import zoneinfo
from collections.abc import Iterable
from functools import lru_cache
from importlib import resources

from sqlalchemy import Text, cast, select
from sqlalchemy.orm import Session

from newsletter.readers.subscriptions import SubscriptionError, UnknownNewsletter
from newsletter.store.models import Newsletter, NewsletterKind, Post


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
    """Topics a reader can pick: the categories a digest can carry. A digest list limited to
    some categories offers those; one open to every category offers all that posts carry."""
    topics: set[str] = set()
    digests = session.scalars(
        select(cast(Newsletter.categories, Text)).where(Newsletter.kind == NewsletterKind.DIGEST)
    ).all()
    if not digests:
        return []
    for raw in digests:
        topics.update(_json_strings(raw))
    if any(not _json_strings(raw) for raw in digests):
        # DISTINCT on the JSON text keeps this to one row per category combination, not per
        # post (and works on PostgreSQL, whose json type has no equality operator).
        for raw in session.scalars(select(cast(Post.categories, Text)).distinct()):
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
    """The canonical IANA zones a form offers (tzdata's ``zone.tab``: Asia/Kolkata, never the
    old alias Asia/Calcutta), plus UTC."""
    table = resources.files("tzdata").joinpath("zoneinfo", "zone.tab").read_text("utf-8")
    names = {
        fields[2]
        for line in table.splitlines()
        if line and not line.startswith("#") and len(fields := line.split("\t")) >= 3
    }
    return ("UTC", *sorted(names & _known_zones()))


def timezone_groups(current: str = "") -> list[tuple[str, list[tuple[str, str]]]]:
    """The offered zones grouped by region, each as (name, label such as "Buenos Aires
    (Argentina)"); a ``current`` zone the list lacks (an old alias) is kept, so saving works."""
    groups: dict[str, list[tuple[str, str]]] = {}
    zones = list(available_timezones())
    if current and current not in zones and valid_timezone(current):
        zones.append(current)
    for name in zones:
        region, _, place = name.partition("/")
        parts = [p.replace("_", " ") for p in place.split("/")] if place else [name]
        label = parts[-1] + (f" ({', '.join(parts[:-1])})" if len(parts) > 1 else "")
        groups.setdefault(region if place else "Universal", []).append((name, label))
    return [(region, sorted(items, key=lambda i: i[1])) for region, items in groups.items()]


def valid_timezone(name: str) -> bool:
    """True for any real IANA zone (the offered ones, and aliases a reader already has)."""
    return name in _known_zones()


@lru_cache(maxsize=1)
def _known_zones() -> frozenset[str]:
    """Every zone name tzdata knows but its posix/ and right/ copies."""
    return frozenset(
        n for n in zoneinfo.available_timezones() if not n.startswith(("posix/", "right/"))
    )
