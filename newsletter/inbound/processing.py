"""Inbound mail: act on bounces, spam complaints and mailto unsubscribe requests.

:func:`process_message` takes one raw message (from the ``newsletter inbound process`` command
or the ``POST /api/v1/inbound`` webhook), reads it with :mod:`newsletter.inbound.parsing` and acts:

* **Unsubscribe request** (the ``mailto:`` of List-Unsubscribe): honoured only with a valid signed
  token in the subject, for the scope the token names (one newsletter or all). The From address
  proves nothing and is never looked at.
* **Hard bounce** (5.x.x): the delivery becomes ``bounced`` with the remote server's words, the
  reader ``bounced`` and the address suppressed.
* **Soft bounce** (4.x.x): recorded; soft bounces for ``soft_bounce_limit`` different issues
  within ``soft_bounce_days`` suppress the address as a dead one.
* **Complaint** (ARF abuse report): the reader leaves every list and the address is suppressed.

Which reader a report is about is decided by evidence, never by the report's word alone:

* the VERP envelope address ``bounces+ISSUE-SUBSCRIBER@domain`` names a delivery, which must
  exist and have been handed to SMTP, and the report must also name that reader's address, or
  quote our mail's Message-ID or one of the reader's signed List-Unsubscribe tokens (ids are
  small numbers, so the VERP address alone would let anyone bounce readers by guessing);
* otherwise a signed token in the quoted mail, or the failed/complained address, picks the
  reader, and the latest delivery we sent them among recent issues is the one it is about.

A bounce or complaint for an address we have not mailed changes nothing. Every action is
idempotent (unsubscribe, suppress and status changes are "set", and ``feedback_events`` has one
row per reader, issue and kind), so the same message processed twice changes nothing the second
time. Like the rest of the domain core, nothing here commits.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from newsletter.inbound.parsing import Failure, Inbound, MessageKind, NotAMessage, read_message
from newsletter.readers.addresses import InvalidAddress, email_key, normalise
from newsletter.readers.subscriptions import (
    InvalidLink,
    is_suppressed,
    read_manage_link,
    suppress,
    unsubscribe,
)
from newsletter.settings import Settings
from newsletter.store.db import utcnow
from newsletter.store.models import (
    Delivery,
    DeliveryStatus,
    FeedbackEvent,
    FeedbackKind,
    Issue,
    Newsletter,
    Subscriber,
    SubscriberStatus,
)

# Bounces arrive within days and complaints within weeks: the latest delivery to an address is
# looked for among this many newest issues, through the (issue_id, subscriber_id) unique index.
RECENT_ISSUES = 500
# Deliveries that reached the SMTP server (SENDING: the worker died before recording success).
MAILED = (DeliveryStatus.SENT, DeliveryStatus.SENDING, DeliveryStatus.BOUNCED)


class Result(enum.StrEnum):
    """What processing one message came to."""

    UNSUBSCRIBED = "unsubscribe"
    BOUNCED = "bounce"
    SOFT_BOUNCE = "soft-bounce"
    COMPLAINT = "complaint"
    IGNORED = "ignored"  # recognised, but not trusted or about nobody we mailed
    UNKNOWN = "unknown"  # not a bounce, complaint or unsubscribe request
    INVALID = "invalid"  # not a mail message at all (or too large)


@dataclass(frozen=True)
class Outcome:
    """What :func:`process_message` recognised and did, as one line for a log or a terminal."""

    result: Result
    summary: str
    changed: bool = False
    subscriber_id: int | None = None
    issue_id: int | None = None

    @property
    def parsed(self) -> bool:
        """False only for input that was not a mail message."""
        return self.result != Result.INVALID

    def line(self) -> str:
        """``result: summary``."""
        return f"{self.result.value}: {self.summary}"

    def as_json(self) -> dict[str, object]:
        """The outcome for the JSON API."""
        return {
            "result": self.result.value,
            "summary": self.summary,
            "changed": self.changed,
            "subscriber_id": self.subscriber_id,
            "issue_id": self.issue_id,
        }


def process_message(
    session: Session,
    settings: Settings,
    raw: bytes,
    *,
    recipient: str = "",
    now: datetime | None = None,
) -> Outcome:
    """Recognise one raw inbound message and act on it (caller commits). Never raises on junk.

    ``recipient`` is the envelope recipient when the MTA passes it (VERP). Call at the start of a
    transaction: a concurrent run on the same report can collide on a unique key, and the whole
    transaction is then rolled back and the message processed again (finding the other's rows).
    """
    try:
        inbound = read_message(raw, recipient=recipient, max_bytes=settings.inbound_max_bytes)
    except NotAMessage as exc:
        return Outcome(Result.INVALID, f"not a mail message: {exc}")
    try:
        return _act(session, settings, inbound, now or utcnow())
    except IntegrityError:
        session.rollback()
        return _act(session, settings, inbound, now or utcnow())


def _act(session: Session, settings: Settings, inbound: Inbound, now: datetime) -> Outcome:
    """Dispatch on the kind of message."""
    if inbound.kind == MessageKind.UNSUBSCRIBE:
        return _unsubscribe_request(session, settings, inbound, now)
    if inbound.kind == MessageKind.BOUNCE:
        return _bounce(session, settings, inbound, now)
    if inbound.kind == MessageKind.COMPLAINT:
        return _complaint(session, settings, inbound, now)
    return Outcome(Result.UNKNOWN, f"{inbound.note}; nothing changed")


# --- unsubscribe requests ------------------------------------------------------------------------


def _unsubscribe_request(
    session: Session, settings: Settings, inbound: Inbound, now: datetime
) -> Outcome:
    """Honour the mailto of List-Unsubscribe when, and only when, its token is valid."""
    if not inbound.token:
        return Outcome(
            Result.IGNORED,
            "unsubscribe request without a token in the subject; the sender's address alone "
            "proves nothing, nothing changed",
        )
    try:
        link = read_manage_link(session, settings, inbound.token)
    except InvalidLink as exc:
        reason = "revoked" if exc.status == 404 else "forged or damaged"
        return Outcome(
            Result.IGNORED, f"unsubscribe request with a {reason} token; nothing changed"
        )
    subscriber = link.subscriber
    left = unsubscribe(session, subscriber, link.newsletter_id, now=now)
    scope = _slug(session, link.newsletter_id) if link.newsletter_id else "every newsletter"
    if not left:
        return Outcome(
            Result.UNSUBSCRIBED,
            f"subscriber {subscriber.id} had already left {scope}; nothing changed",
            subscriber_id=subscriber.id,
        )
    return Outcome(
        Result.UNSUBSCRIBED,
        f"subscriber {subscriber.id} left {_slugs(session, left)}",
        changed=True,
        subscriber_id=subscriber.id,
    )


# --- bounces -------------------------------------------------------------------------------------


def _bounce(session: Session, settings: Settings, inbound: Inbound, now: datetime) -> Outcome:
    """Act on each failed recipient we can tie to a delivery; ignore the rest."""
    outcomes: list[Outcome] = []
    seen: set[int] = set()
    for failure in inbound.failures:
        target = _bounce_target(session, settings, inbound, failure)
        if target is None or target[0].id in seen:
            continue
        subscriber, delivery = target
        seen.add(subscriber.id)
        if failure.permanent:
            outcomes.append(_hard_bounce(session, subscriber, delivery, failure, now))
        else:
            outcomes.append(_soft_bounce(session, settings, subscriber, delivery, failure, now))
    if not outcomes:
        kind = "permanent" if any(f.permanent for f in inbound.failures) else "temporary"
        return Outcome(
            Result.IGNORED,
            f"{kind} bounce for {len(inbound.failures)} address(es) we have not mailed "
            "recently (or the report does not prove which); nothing changed",
        )
    first = outcomes[0]
    if len(outcomes) == 1:
        return first
    return Outcome(
        first.result,
        "; ".join(o.summary for o in outcomes),
        changed=any(o.changed for o in outcomes),
        subscriber_id=first.subscriber_id,
        issue_id=first.issue_id,
    )


def _bounce_target(
    session: Session, settings: Settings, inbound: Inbound, failure: Failure
) -> tuple[Subscriber, Delivery] | None:
    """The reader and delivery a failed recipient is about, when the report proves it."""
    key = _key(failure.address)
    proven = _proven_subscribers(session, settings, inbound)
    message_id = inbound.returned.message_id if inbound.returned else ""
    for issue_id, subscriber_id in verp_ids(settings, inbound.envelope):
        delivery = _mailed_delivery(session, issue_id, subscriber_id)
        subscriber = session.get(Subscriber, subscriber_id)
        if delivery is None or subscriber is None:
            continue
        if (
            subscriber.email_key == key
            or subscriber.id in proven
            or (message_id and delivery.message_id == message_id)
        ):
            return subscriber, delivery
    candidate = _subscriber_by_key(session, key)
    if candidate is None and len(proven) == 1:
        # A forwarded address failed: the quoted mail's token still says whose mail it was.
        candidate = session.get(Subscriber, next(iter(proven)))
    if candidate is None:
        return None
    latest = _latest_delivery(session, candidate.id, message_id)
    return (candidate, latest) if latest is not None else None


def _hard_bounce(
    session: Session, subscriber: Subscriber, delivery: Delivery, failure: Failure, now: datetime
) -> Outcome:
    """Bounced delivery, bounced reader, suppressed address: each only if not so already."""
    detail = failure.describe()
    changed = False
    if delivery.status != DeliveryStatus.BOUNCED:
        delivery.status = DeliveryStatus.BOUNCED
        delivery.smtp_code = failure.smtp_code or delivery.smtp_code
        delivery.smtp_response = f"bounced after acceptance: {detail}"[:1000]
        changed = True
    if subscriber.status != SubscriberStatus.BOUNCED:
        subscriber.status = SubscriberStatus.BOUNCED
        changed = True
    if not is_suppressed(session, subscriber.email):
        suppress(session, subscriber.email, "bounce", f"{detail} (issue {delivery.issue_id})")
        changed = True
    changed |= _record(
        session,
        subscriber.id,
        delivery.issue_id,
        FeedbackKind.HARD_BOUNCE,
        failure.status,
        detail,
        now,
    )
    session.flush()
    done = (
        f"subscriber {subscriber.id} bounced ({detail[:120]}), delivery {delivery.id} of issue "
        f"{delivery.issue_id} marked bounced, address suppressed"
    )
    return Outcome(
        Result.BOUNCED,
        done if changed else f"{done} already; nothing changed",
        changed=changed,
        subscriber_id=subscriber.id,
        issue_id=delivery.issue_id,
    )


def _soft_bounce(
    session: Session,
    settings: Settings,
    subscriber: Subscriber,
    delivery: Delivery,
    failure: Failure,
    now: datetime,
) -> Outcome:
    """Record a temporary failure; enough of them across issues retire the address."""
    changed = _record(
        session,
        subscriber.id,
        delivery.issue_id,
        FeedbackKind.SOFT_BOUNCE,
        failure.status,
        failure.describe(),
        now,
    )
    count = _soft_bounced_issues(session, settings, subscriber.id, now)
    summary = (
        f"subscriber {subscriber.id}, issue {delivery.issue_id}: temporary failure "
        f"({failure.describe()[:120]}), {count} of {settings.soft_bounce_limit} in "
        f"{settings.soft_bounce_days} days"
    )
    limit = max(1, settings.soft_bounce_limit)
    if count >= limit and not is_suppressed(session, subscriber.email):
        _retire_soft_bounced(session, settings, subscriber, failure, count)
        return Outcome(
            Result.SOFT_BOUNCE,
            f"{summary}: address suppressed",
            changed=True,
            subscriber_id=subscriber.id,
            issue_id=delivery.issue_id,
        )
    return Outcome(
        Result.SOFT_BOUNCE,
        summary if changed else f"{summary}; already recorded, nothing changed",
        changed=changed,
        subscriber_id=subscriber.id,
        issue_id=delivery.issue_id,
    )


def _soft_bounced_issues(
    session: Session, settings: Settings, subscriber_id: int, now: datetime
) -> int:
    """How many different issues soft-bounced for this reader within ``soft_bounce_days``."""
    since = now - timedelta(days=settings.soft_bounce_days)
    return int(
        session.scalar(
            select(func.count(func.distinct(FeedbackEvent.issue_id))).where(
                FeedbackEvent.subscriber_id == subscriber_id,
                FeedbackEvent.kind == FeedbackKind.SOFT_BOUNCE,
                FeedbackEvent.created_at >= since,
            )
        )
        or 0
    )


def _retire_soft_bounced(
    session: Session, settings: Settings, subscriber: Subscriber, failure: Failure, count: int
) -> None:
    """Suppress an address that keeps failing temporarily and mark its reader bounced."""
    suppress(
        session,
        subscriber.email,
        "soft-bounce",
        f"{count} temporary failures in {settings.soft_bounce_days} days; last: "
        f"{failure.describe()}",
    )
    subscriber.status = SubscriberStatus.BOUNCED
    session.flush()


# --- complaints ----------------------------------------------------------------------------------


def _complaint(session: Session, settings: Settings, inbound: Inbound, now: datetime) -> Outcome:
    """The reader marked our mail as spam: leave every list, suppress the address."""
    target = _complaint_target(session, settings, inbound)
    if target is None:
        return Outcome(
            Result.IGNORED,
            "complaint (ARF) that names no reader we mailed (address redacted and no token of "
            "ours quoted?); nothing changed",
        )
    subscriber, issue_id = target
    left = unsubscribe(session, subscriber, None, now=now)
    changed = bool(left)
    if not is_suppressed(session, subscriber.email):
        where = f" about issue {issue_id}" if issue_id else ""
        suppress(session, subscriber.email, "complaint", f"spam complaint{where}")
        changed = True
    changed |= _record(
        session,
        subscriber.id,
        issue_id,
        FeedbackKind.COMPLAINT,
        "",
        f"feedback type {inbound.feedback_type}",
        now,
    )
    session.flush()
    done = f"subscriber {subscriber.id} unsubscribed from every newsletter and suppressed"
    return Outcome(
        Result.COMPLAINT,
        done if changed else f"{done} already; nothing changed",
        changed=changed,
        subscriber_id=subscriber.id,
        issue_id=issue_id,
    )


def _complaint_target(
    session: Session, settings: Settings, inbound: Inbound
) -> tuple[Subscriber, int | None] | None:
    """Whose complaint it is (a quoted token, a corroborated VERP id, a mailed address)."""
    message_id = inbound.returned.message_id if inbound.returned else ""
    keys = {_key(a) for a in inbound.complained}
    pairs = verp_ids(settings, inbound.envelope)
    for subscriber_id in _proven_subscribers(session, settings, inbound):
        subscriber = session.get(Subscriber, subscriber_id)
        if subscriber is None:
            continue
        issue = next(
            (i for i, s in pairs if s == subscriber_id and _mailed_delivery(session, i, s)), None
        )
        if issue is None:
            latest = _latest_delivery(session, subscriber_id, message_id)
            issue = latest.issue_id if latest is not None else None
        return subscriber, issue
    for issue_id, subscriber_id in pairs:
        delivery = _mailed_delivery(session, issue_id, subscriber_id)
        subscriber = session.get(Subscriber, subscriber_id)
        if delivery is None or subscriber is None:
            continue
        if subscriber.email_key in keys or (message_id and delivery.message_id == message_id):
            return subscriber, issue_id
    for key in keys:
        candidate = _subscriber_by_key(session, key)
        if candidate is None:
            continue
        latest = _latest_delivery(session, candidate.id, message_id)
        if latest is not None:
            return candidate, latest.issue_id
    return None


# --- evidence ------------------------------------------------------------------------------------


def verp_ids(settings: Settings, addresses: tuple[str, ...]) -> list[tuple[int, int]]:
    """(issue id, subscriber id) pairs from VERP addresses (see rendering.envelope_sender)."""
    local, _, domain = settings.bounce_address.strip().rpartition("@")
    if not (local.endswith("+") and domain):
        return []
    pattern = re.compile(
        rf"^{re.escape(local)}(\d{{1,18}})-(\d{{1,18}})@{re.escape(domain)}$", re.IGNORECASE
    )
    pairs: list[tuple[int, int]] = []
    for address in addresses:
        match = pattern.match(address.strip())
        if match:
            pair = (int(match.group(1)), int(match.group(2)))
            if pair not in pairs:
                pairs.append(pair)
    return pairs


def _proven_subscribers(session: Session, settings: Settings, inbound: Inbound) -> list[int]:
    """Readers whose valid signed token the quoted mail carries (tokens cannot be guessed)."""
    found: list[int] = []
    for token in inbound.returned.tokens if inbound.returned else ():
        try:
            link = read_manage_link(session, settings, token)
        except InvalidLink:
            continue
        if link.subscriber.id not in found:
            found.append(link.subscriber.id)
    return found


def _mailed_delivery(session: Session, issue_id: int, subscriber_id: int) -> Delivery | None:
    """The delivery of one issue to one reader, if it went out to the SMTP server."""
    delivery = session.scalar(
        select(Delivery).where(
            Delivery.issue_id == issue_id, Delivery.subscriber_id == subscriber_id
        )
    )
    return delivery if delivery is not None and delivery.status in MAILED else None


def _latest_delivery(session: Session, subscriber_id: int, message_id: str) -> Delivery | None:
    """The newest mailed delivery to a reader among recent issues; the quoted one if known."""
    recent = list(session.scalars(select(Issue.id).order_by(Issue.id.desc()).limit(RECENT_ISSUES)))
    if not recent:
        return None
    query = (
        select(Delivery)
        .where(
            Delivery.subscriber_id == subscriber_id,
            Delivery.issue_id.in_(recent),
            Delivery.status.in_(MAILED),
        )
        .order_by(Delivery.issue_id.desc())
    )
    deliveries = list(session.scalars(query.limit(50)))
    if message_id:
        for delivery in deliveries:
            if delivery.message_id == message_id:
                return delivery
    return deliveries[0] if deliveries else None


def _subscriber_by_key(session: Session, key: str) -> Subscriber | None:
    """The reader with this address key, if any."""
    if not key:
        return None
    return session.scalar(select(Subscriber).where(Subscriber.email_key == key))


def _key(address: str) -> str:
    """The unique key of a reported address, normalised like a signup's; "" when it is none.

    Every stored key came through the same normalisation, so an address that fails it names no
    reader (and a mangled one, with a NUL say, must never reach PostgreSQL as a parameter).
    """
    try:
        return email_key(normalise(address))
    except InvalidAddress:
        return ""


def _record(
    session: Session,
    subscriber_id: int,
    issue_id: int | None,
    kind: FeedbackKind,
    status: str,
    detail: str,
    now: datetime,
) -> bool:
    """Add the feedback event unless this reader already has one of this kind for this issue."""
    same_issue = (
        FeedbackEvent.issue_id.is_(None) if issue_id is None else FeedbackEvent.issue_id == issue_id
    )
    exists = session.scalar(
        select(FeedbackEvent.id).where(
            FeedbackEvent.subscriber_id == subscriber_id, FeedbackEvent.kind == kind, same_issue
        )
    )
    if exists is not None:
        return False
    session.add(
        FeedbackEvent(
            subscriber_id=subscriber_id,
            issue_id=issue_id,
            kind=kind,
            status=status[:20],
            detail=detail[:1000],
            created_at=now,
        )
    )
    session.flush()
    return True


def _slug(session: Session, newsletter_id: int) -> str:
    """A newsletter's slug for messages (its id if it is gone)."""
    slug = session.scalar(select(Newsletter.slug).where(Newsletter.id == newsletter_id))
    return slug or f"newsletter {newsletter_id}"


def _slugs(session: Session, newsletter_ids: list[int]) -> str:
    """Slugs of several newsletters, comma-separated."""
    return ", ".join(_slug(session, i) for i in newsletter_ids)
