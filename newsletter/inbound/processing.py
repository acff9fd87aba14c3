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

Anyone can write a report that names an address, so a bounce or complaint (soft bounces
included) acts only on evidence that the mail it is about was ours, to that reader:

* it came to a signed VERP address ``bounces+ISSUE-READER-TAG@domain``
  (newsletter/mail/verp.py) whose tag holds, and that issue really went out to that reader; or
* it quotes the Message-ID of a delivery we really sent to the address it names (Message-IDs
  are random, so only a copy of the mail has them); or
* the quoted mail carries one of our signed tokens for the reader (List-Unsubscribe).

Anything else is **unmatched**: the outcome says so, one ``unmatched_reports`` row (per distinct
message) lets ops count them, and no reader changes. Every action is idempotent (unsubscribe,
suppress and status changes are "set", ``feedback_events`` has one row per reader, issue and kind,
``unmatched_reports`` one per message), so the same message processed twice changes nothing the
second time. Like the rest of the domain core, nothing here commits.

:func:`process_event` does the same for an event a mail provider reported by webhook
(newsletter/inbound/events.py): it becomes a read report and meets the same evidence rules and
actions; its unmatched row is keyed by the provider's event id, so a retried event adds none.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import Select, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from newsletter.hooks import events as webhooks
from newsletter.inbound.events import EventKind, ProviderEvent
from newsletter.inbound.guard import Guard, count_report
from newsletter.inbound.limits import InboundRefused
from newsletter.inbound.parsing import Failure, Inbound, MessageKind, NotAMessage, read_message
from newsletter.mail.verp import VerpClaim, read_verp
from newsletter.readers.addresses import InvalidAddress, email_key, normalise
from newsletter.readers.manage import read_unsubscribe_link, unsubscribe
from newsletter.readers.subscriptions import InvalidLink
from newsletter.readers.suppression import is_suppressed, suppress
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
    UnmatchedReport,
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
    IGNORED = "ignored"  # an unsubscribe request without a valid token
    UNMATCHED = "unmatched"  # a bounce or complaint that proves no mail of ours; recorded
    DELIVERED = "delivered"  # a provider reports a mail delivered: nothing to do
    UNKNOWN = "unknown"  # not a bounce, complaint or unsubscribe request
    INVALID = "invalid"  # not a mail message at all
    REFUSED = "refused"  # beyond a limit of newsletter/inbound/limits.py; not read


@dataclass(frozen=True)
class Outcome:
    """What :func:`process_message` recognised and did, as one line for a log or a terminal."""

    result: Result
    summary: str
    changed: bool = False  # did any reader, delivery, suppression or feedback event change
    subscriber_id: int | None = None
    issue_id: int | None = None
    limit: str = ""  # of a refused message: "size", "depth", "parts", "headers", "recipients"

    @property
    def parsed(self) -> bool:
        """False only for input that was not a mail message, or was refused unread."""
        return self.result not in (Result.INVALID, Result.REFUSED)

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

    A message beyond a limit is REFUSED before anything is looked up or written.

    ``recipient`` is the envelope recipient when the MTA passes it (VERP). Call at the start of a
    transaction: a concurrent run on the same report can collide on a unique key, and the whole
    transaction is then rolled back and the message processed again (finding the other's rows).
    """
    try:
        inbound = read_message(raw, recipient=recipient, max_bytes=settings.inbound_max_bytes)
    except InboundRefused as exc:
        return Outcome(Result.REFUSED, exc.reason, limit=exc.limit)
    except NotAMessage as exc:
        return Outcome(Result.INVALID, f"not a mail message: {exc}")
    digest = hashlib.sha256(raw).hexdigest()
    try:
        return _act(session, settings, inbound, digest, now or utcnow())
    except IntegrityError:
        session.rollback()
        return _act(session, settings, inbound, digest, now or utcnow())


def process_event(
    session: Session, settings: Settings, event: ProviderEvent, *, now: datetime | None = None
) -> Outcome:
    """Act on one provider event like on the report it stands for (caller commits)."""
    if event.kind == EventKind.DELIVERY:
        return Outcome(Result.DELIVERED, f"{event.describe()}: delivered; nothing changed")
    inbound = event.as_inbound()
    digest = event.digest()
    try:
        return _act(session, settings, inbound, digest, now or utcnow())
    except IntegrityError:
        session.rollback()
        return _act(session, settings, inbound, digest, now or utcnow())


def _act(
    session: Session, settings: Settings, inbound: Inbound, digest: str, now: datetime
) -> Outcome:
    """Dispatch on the kind of message."""
    if inbound.kind == MessageKind.UNSUBSCRIBE:
        return _unsubscribe_request(session, settings, inbound, now)
    if inbound.kind in (MessageKind.BOUNCE, MessageKind.COMPLAINT):
        evidence = _gather(session, settings, inbound)
        if inbound.kind == MessageKind.BOUNCE:
            outcome = _bounce(session, settings, inbound, evidence, now)
        else:
            outcome = _complaint(session, settings, inbound, evidence, now)
        return outcome or _unmatched(session, inbound, evidence, digest, now)
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
        # A link from before "log out all links" may still leave, as on the web (RFC 8058).
        link = read_unsubscribe_link(session, settings, inbound.token)
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


def _bounce(
    session: Session, settings: Settings, inbound: Inbound, evidence: Evidence, now: datetime
) -> Outcome | None:
    """Act on each reader the evidence ties a failure to; None when it ties none."""
    outcomes: list[Outcome] = []
    for subscriber, delivery, failure in _bounce_targets(session, inbound, evidence):
        if failure.permanent:
            outcomes.append(_hard_bounce(session, settings, subscriber, delivery, failure, now))
        else:
            outcomes.append(_soft_bounce(session, settings, subscriber, delivery, failure, now))
    if not outcomes:
        return None
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


def _bounce_targets(
    session: Session, inbound: Inbound, evidence: Evidence
) -> list[tuple[Subscriber, Delivery, Failure]]:
    """(reader, delivery, failure) for each reader the evidence proves a failure is about."""
    targets: list[tuple[Subscriber, Delivery, Failure]] = []
    seen: set[int] = set()
    # A signed VERP address names the one mail (and reader) the report is about, whatever
    # address failed: a forwarded address may be the one that bounced.
    for delivery in evidence.verp:
        subscriber = session.get(Subscriber, delivery.subscriber_id)
        if subscriber is not None and subscriber.id not in seen:
            seen.add(subscriber.id)
            targets.append((subscriber, delivery, _failure_for(subscriber, inbound.failures)))
    for failure in inbound.failures:
        target = _quoted_target(session, evidence, _key(failure.address))
        if target is not None and target[0].id not in seen:
            seen.add(target[0].id)
            targets.append((*target, failure))
    return targets


def _failure_for(subscriber: Subscriber, failures: tuple[Failure, ...]) -> Failure:
    """The failure that names this reader's address, else the first permanent one, else any."""
    for failure in failures:
        if _key(failure.address) == subscriber.email_key:
            return failure
    return next((f for f in failures if f.permanent), failures[0])


def _quoted_target(
    session: Session, evidence: Evidence, key: str
) -> tuple[Subscriber, Delivery] | None:
    """The reader and delivery the quoted mail proves: our Message-ID sent to the named
    address, or a token of ours (then the quoted delivery, else their latest)."""
    subscriber = _subscriber_by_key(session, key)
    if subscriber is not None and evidence.message_id:
        delivery = _quoted_delivery(session, subscriber.id, evidence.message_id)
        if delivery is not None:
            return subscriber, delivery
    proven = [i for i in evidence.proven if subscriber is not None and i == subscriber.id]
    if not proven and len(evidence.proven) == 1:
        # A forwarded address failed: the quoted mail's token still says whose mail it was.
        proven = list(evidence.proven)
    for subscriber_id in proven:
        reader = session.get(Subscriber, subscriber_id)
        if reader is None:
            continue
        delivery = _quoted_delivery(session, reader.id, evidence.message_id)
        delivery = delivery or _latest_delivery(session, reader.id)
        if delivery is not None:
            return reader, delivery
    return None


def _hard_bounce(
    session: Session,
    settings: Settings,
    subscriber: Subscriber,
    delivery: Delivery,
    failure: Failure,
    now: datetime,
) -> Outcome:
    """Bounced delivery, bounced reader, suppressed address: each only if not so already."""
    detail = failure.describe()
    changed = False
    if delivery.status != DeliveryStatus.BOUNCED:
        delivery.status = DeliveryStatus.BOUNCED
        delivery.smtp_code = failure.smtp_code or delivery.smtp_code
        delivery.smtp_response = f"bounced after acceptance: {detail}"[:1000]
        changed = True
        # Once per delivery: the send's guard counts it and may pause a send still running.
        count_report(session, settings, delivery.issue_id, Guard.BOUNCE)
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


def _complaint(
    session: Session, settings: Settings, inbound: Inbound, evidence: Evidence, now: datetime
) -> Outcome | None:
    """The reader marked our mail as spam: leave every list, suppress the address."""
    target = _complaint_target(session, inbound, evidence)
    if target is None:
        return None
    subscriber, issue_id = target
    left = unsubscribe(session, subscriber, None, now=now)
    changed = bool(left)
    if not is_suppressed(session, subscriber.email):
        where = f" about issue {issue_id}" if issue_id else ""
        suppress(session, subscriber.email, "complaint", f"spam complaint{where}")
        changed = True
    recorded = _record(
        session,
        subscriber.id,
        issue_id,
        FeedbackKind.COMPLAINT,
        "",
        f"feedback type {inbound.feedback_type}",
        now,
    )
    if recorded and issue_id is not None:
        # Once per reader and issue: the send's guard counts it and may pause it.
        count_report(session, settings, issue_id, Guard.COMPLAINT)
    changed |= recorded
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
    session: Session, inbound: Inbound, evidence: Evidence
) -> tuple[Subscriber, int | None] | None:
    """Whose complaint it is: a token of ours, a signed VERP address, or our quoted Message-ID
    sent to a complained-about address."""
    for subscriber_id in evidence.proven:
        subscriber = session.get(Subscriber, subscriber_id)
        if subscriber is None:
            continue
        delivery = next((d for d in evidence.verp if d.subscriber_id == subscriber_id), None)
        delivery = delivery or _quoted_delivery(session, subscriber_id, evidence.message_id)
        delivery = delivery or _latest_delivery(session, subscriber_id)
        return subscriber, delivery.issue_id if delivery is not None else None
    for delivery in evidence.verp:
        subscriber = session.get(Subscriber, delivery.subscriber_id)
        if subscriber is not None:
            return subscriber, delivery.issue_id
    for address in inbound.complained:
        target = _quoted_target(session, replace(evidence, proven=()), _key(address))
        if target is not None:
            return target[0], target[1].issue_id
    return None


# --- unmatched -----------------------------------------------------------------------------------


def _unmatched(
    session: Session, inbound: Inbound, evidence: Evidence, digest: str, now: datetime
) -> Outcome:
    """Record a report that proves nothing (once per message) and say why; nobody changes."""
    kind = "complaint" if inbound.kind == MessageKind.COMPLAINT else "bounce"
    named = len(inbound.complained) if kind == "complaint" else len(inbound.failures)
    why = evidence.missing()
    exists = session.scalar(select(UnmatchedReport.id).where(UnmatchedReport.digest == digest))
    if exists is None:
        session.add(
            UnmatchedReport(
                digest=digest,
                kind=kind,
                message_id=inbound.message_id[:300],
                reason=why[:300],
                created_at=now,
            )
        )
        session.flush()
    return Outcome(
        Result.UNMATCHED,
        f"{kind} naming {named} address(es) that proves no mail of ours ({why}); recorded, "
        "no reader changed",
    )


# --- evidence ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Evidence:
    """What a report proves about the mail it is about, gathered once per message."""

    verp: tuple[Delivery, ...] = ()  # mailed deliveries named by signed VERP addresses
    proven: tuple[int, ...] = ()  # readers whose valid signed token the quoted mail carries
    message_id: str = ""  # the quoted mail's Message-ID ("" when none was quoted)
    claims: tuple[VerpClaim, ...] = ()  # every VERP address it came to, signed or not
    tokens: int = 0  # signed-looking tokens quoted, valid or not

    def missing(self) -> str:
        """Why this evidence ties the report to nobody, for ops."""
        if any(not c.signed for c in self.claims):
            verp = "its VERP address has no valid signature"
        elif self.claims:
            verp = "its VERP address names a mail we did not send"
        else:
            verp = "it did not come to a VERP address of ours"
        quoted = (
            "the Message-ID it quotes is not ours for the address it names"
            if self.message_id
            else "it quotes no Message-ID"
        )
        token = "its tokens are not valid" if self.tokens else "no token of ours"
        return f"{verp}, {quoted}, {token}"


def _gather(session: Session, settings: Settings, inbound: Inbound) -> Evidence:
    """The evidence a bounce or complaint carries (VERP, quoted Message-ID, tokens)."""
    claims = verp_claims(settings, inbound.envelope)
    verp = []
    for claim in claims:
        delivery = _mailed_delivery(session, claim.issue_id, claim.subscriber_id)
        if claim.signed and delivery is not None:
            verp.append(delivery)
    returned = inbound.returned
    return Evidence(
        verp=tuple(verp),
        proven=tuple(_proven_subscribers(session, settings, inbound)),
        message_id=returned.message_id if returned else "",
        claims=claims,
        tokens=len(returned.tokens) if returned else 0,
    )


def verp_claims(settings: Settings, addresses: tuple[str, ...]) -> tuple[VerpClaim, ...]:
    """Every distinct VERP address among these, signed or not (see newsletter/mail/verp.py)."""
    claims: list[VerpClaim] = []
    for address in addresses:
        claim = read_verp(settings, address)
        if claim is not None and claim not in claims:
            claims.append(claim)
    return tuple(claims)


def verp_ids(settings: Settings, addresses: tuple[str, ...]) -> list[tuple[int, int]]:
    """(issue id, subscriber id) pairs of the VERP addresses whose signature holds."""
    return [(c.issue_id, c.subscriber_id) for c in verp_claims(settings, addresses) if c.signed]


def _proven_subscribers(session: Session, settings: Settings, inbound: Inbound) -> list[int]:
    """Readers whose valid signed token the quoted mail carries (tokens cannot be guessed)."""
    found: list[int] = []
    for token in inbound.returned.tokens if inbound.returned else ():
        try:
            # An older version is still proof that we mailed this reader at this address.
            link = read_unsubscribe_link(session, settings, token)
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


def _recent_deliveries(session: Session, subscriber_id: int) -> Select[Delivery]:
    """Mailed deliveries to a reader among recent issues, newest first (via the unique index)."""
    recent = list(session.scalars(select(Issue.id).order_by(Issue.id.desc()).limit(RECENT_ISSUES)))
    return (
        select(Delivery)
        .where(
            Delivery.subscriber_id == subscriber_id,
            Delivery.issue_id.in_(recent),
            Delivery.status.in_(MAILED),
        )
        .order_by(Delivery.issue_id.desc())
    )


def _quoted_delivery(session: Session, subscriber_id: int, message_id: str) -> Delivery | None:
    """The recent mailed delivery to this reader that had this Message-ID, if any."""
    if not message_id:
        return None
    query = _recent_deliveries(session, subscriber_id).where(
        Delivery.message_id == message_id[:300]
    )
    return session.scalars(query.limit(1)).first()


def _latest_delivery(session: Session, subscriber_id: int) -> Delivery | None:
    """The newest mailed delivery to a reader among recent issues."""
    return session.scalars(_recent_deliveries(session, subscriber_id).limit(1)).first()


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
    # Only here, after the evidence rules tied the report to our mail, and once per event.
    webhooks.feedback_recorded(session, subscriber_id, issue_id, kind, status[:20])
    session.flush()
    return True


def _slug(session: Session, newsletter_id: int) -> str:
    """A newsletter's slug for messages (its id if it is gone)."""
    slug = session.scalar(select(Newsletter.slug).where(Newsletter.id == newsletter_id))
    return slug or f"newsletter {newsletter_id}"


def _slugs(session: Session, newsletter_ids: list[int]) -> str:
    """Slugs of several newsletters, comma-separated."""
    return ", ".join(_slug(session, i) for i in newsletter_ids)
