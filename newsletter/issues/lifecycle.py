"""Issues and their state machine: what editors and schedules do to one send of a newsletter.

::

    draft ──send──▶ sending ──(all done)──▶ sent
      │ schedule       │ ▲                    │ resend-failed ─▶ sending
      ▼                ▼ │ resume             ▼
    scheduled ──due──▶ paused      (nothing new) skipped
      any of draft/scheduled/sending/paused ──cancel──▶ cancelled
      sending ──(every delivery failed / cannot render)──▶ failed ──resume──▶ sending

Every transition is one conditional UPDATE (``… WHERE status IN (allowed)``), so two editors or
an editor and a worker racing each other cannot both win; the loser gets
:class:`IllegalTransition` with a message that says what is allowed. Actions that start work
commit first and enqueue after (tasks never see uncommitted rows). The engine that does the
sending lives in :mod:`newsletter.delivery.fan_out` and :mod:`newsletter.delivery.batches`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from newsletter.content.sanitize import clean_html, html_to_text
from newsletter.content.selection import plan_digest
from newsletter.issues.presend import Report, check_issue
from newsletter.issues.queue import TaskQueue
from newsletter.issues.rendering import envelope_sender, prepare_issue
from newsletter.issues.status import update_issue
from newsletter.issues.test_sends import inert_reader, mark_as_test
from newsletter.mail.transport import DeliveryError, get_transport
from newsletter.readers.addresses import InvalidAddress, email_hash, normalise
from newsletter.readers.eligibility import eligible_clause, suppressed_hashes
from newsletter.settings import Settings
from newsletter.store.db import utcnow
from newsletter.store.models import (
    DeliveryStatus,
    Frequency,
    Issue,
    IssueStatus,
    Newsletter,
    NewsletterKind,
)
from newsletter.store.queries import DELIVERIES, ISSUES, SUBSCRIBERS, SUBSCRIPTIONS, chunks

log = logging.getLogger(__name__)

__all__ = [
    "DispatchError",
    "IllegalTransition",
    "InvalidRequest",
    "IssueNotFound",
    "cancel",
    "create_campaign",
    "create_digest",
    "resend_failed",
    "resume",
    "send",
]

S = IssueStatus
# Which states each action may start from.
ALLOWED: dict[str, tuple[IssueStatus, ...]] = {
    "send": (S.DRAFT, S.SCHEDULED),
    "schedule": (S.DRAFT, S.SCHEDULED),
    "pause": (S.SENDING,),
    "resume": (S.PAUSED, S.FAILED),
    "cancel": (S.DRAFT, S.SCHEDULED, S.SENDING, S.PAUSED),
    "resend-failed": (S.SENT, S.FAILED, S.PAUSED, S.SENDING),
    "hold": (S.DRAFT, S.SCHEDULED),
    "release": (S.DRAFT, S.SCHEDULED),
    "edit": (S.DRAFT, S.SCHEDULED),
}
PAST = {
    "send": "sent",
    "schedule": "scheduled",
    "pause": "paused",
    "resume": "resumed",
    "cancel": "cancelled",
    "resend-failed": "resent to failed readers",
    "hold": "held",
    "release": "released",
    "edit": "edited",
}
MAX_TEST_RECIPIENTS = 20
SUBJECT_MAX = 998


class DispatchError(Exception):
    """A refused request; the message is safe to show an editor."""


class IssueNotFound(DispatchError):
    """No issue (or newsletter) with that id or slug."""


class IllegalTransition(DispatchError):
    """The action is not allowed in the issue's current state (HTTP 409)."""


class InvalidRequest(DispatchError):
    """Bad input: a missing subject, an unknown frequency, a campaign for a digest, ..."""


class CheckFailed(DispatchError):
    """The pre-send check failed and nobody overrode it; ``report`` says what (HTTP 422)."""

    def __init__(self, report: Report) -> None:
        super().__init__(
            f"{report.summary()}. Fix it and send again, or send with an override and its "
            "reason (`newsletter issues send ID --override-check REASON`)."
        )
        self.report = report


def _one_line(value: str, what: str) -> str:
    """A header-bound field (subject, preheader): refuse control characters, fold spaces.

    Line breaks in a subject are how header injection starts; refusing them (rather than
    quietly joining the lines) tells the editor their text was not what they meant.
    """
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise InvalidRequest(f"The {what} must be one line without control characters.")
    return " ".join(value.split())


# --- Looking things up ---------------------------------------------------------------------------


def get_issue(session: Session, issue_id: int) -> Issue:
    """The issue with that id, fresh from the database."""
    issue = session.get(Issue, issue_id, populate_existing=True)
    if issue is None:
        raise IssueNotFound(f"There is no issue {issue_id}.")
    return issue


def find_newsletter(session: Session, slug: str) -> Newsletter:
    """The newsletter with that slug."""
    newsletter = session.scalar(select(Newsletter).where(Newsletter.slug == slug.strip()))
    if newsletter is None:
        known = ", ".join(session.scalars(select(Newsletter.slug).order_by(Newsletter.slug)))
        raise IssueNotFound(
            f"There is no newsletter {slug!r}." + (f" Known: {known}." if known else "")
        )
    return newsletter


def parse_frequency(value: str | None) -> Frequency | None:
    """``daily``/``weekly`` (or None) to a Frequency; anything else is an InvalidRequest."""
    if value is None or value == "":
        return None
    try:
        return Frequency(value.strip().lower())
    except ValueError:
        raise InvalidRequest(
            f"Unknown frequency {value!r}: use {' or '.join(f.value for f in Frequency)}."
        ) from None


def list_issues(
    session: Session,
    *,
    newsletter: str | None = None,
    status: str | None = None,
    limit: int = 50,
) -> list[Issue]:
    """Newest issues first, optionally of one newsletter (slug) or status."""
    query = select(Issue).order_by(Issue.id.desc()).limit(max(1, min(limit, 500)))
    if newsletter:
        query = query.where(Issue.newsletter_id == find_newsletter(session, newsletter).id)
    if status:
        try:
            query = query.where(Issue.status == IssueStatus(status))
        except ValueError:
            raise InvalidRequest(
                f"Unknown status {status!r}: use one of {', '.join(s.value for s in S)}."
            ) from None
    return list(session.scalars(query))


# --- Creating issues -----------------------------------------------------------------------------


def create_digest(
    session: Session,
    settings: Settings,
    newsletter: Newsletter,
    *,
    frequency: Frequency | None = None,
    now: datetime | None = None,
    send_at: datetime | None = None,
    schedule_id: int | None = None,
    local_send_time: str = "",
) -> Issue:
    """Plan a digest issue from the posts since the cohort's last one (flushed, not committed).

    It is a draft, or scheduled when ``send_at`` is given, or ``skipped`` (with the reason)
    when there is nothing new; ``frequency`` defaults to the newsletter's.
    """
    if NewsletterKind(newsletter.kind) is not NewsletterKind.DIGEST:
        raise InvalidRequest(
            f"{newsletter.slug} is a campaign newsletter: write a campaign for it instead."
        )
    now = now or utcnow()
    issue = Issue(
        newsletter_id=newsletter.id,
        kind=NewsletterKind.DIGEST,
        status=IssueStatus.DRAFT,
        frequency=frequency or Frequency(newsletter.default_frequency),
        schedule_id=schedule_id,
        send_at=send_at,
        local_send_time=local_send_time,
    )
    session.add(issue)
    session.flush()
    if not plan_digest(session, settings, issue, now):
        issue.status = IssueStatus.SKIPPED
        issue.status_reason = (
            f"nothing new: no posts for {newsletter.slug} ({issue.frequency}) since "
            f"{_when(issue.window_start)}"
        )
        issue.finished_at = now
    elif send_at is not None:
        issue.status = IssueStatus.SCHEDULED
    session.flush()
    return issue


def create_campaign(
    session: Session,
    settings: Settings,
    newsletter: Newsletter,
    *,
    subject: str,
    body_html: str,
    body_text: str = "",
    preheader: str = "",
    frequency: Frequency | None = None,
) -> Issue:
    """An editor-written issue as a draft: sanitised HTML, plain text derived when not given."""

    subject = _one_line(subject, "subject")
    if not subject:
        raise InvalidRequest("A campaign needs a subject.")
    if len(subject) > SUBJECT_MAX:
        raise InvalidRequest(f"The subject is longer than {SUBJECT_MAX} characters.")
    html = clean_html(body_html, settings.site_url)
    text = body_text.replace("\r\n", "\n").strip() or html_to_text(html)
    if not html and not text:
        raise InvalidRequest("A campaign needs a body: give HTML or text.")
    issue = Issue(
        newsletter_id=newsletter.id,
        kind=NewsletterKind.CAMPAIGN,
        status=IssueStatus.DRAFT,
        frequency=frequency,
        subject=subject,
        preheader=_one_line(preheader, "preheader")[:500],
        body_html=html,
        body_text=text,
    )
    session.add(issue)
    session.flush()
    return issue


def edit(
    session: Session,
    settings: Settings,
    issue_id: int,
    *,
    subject: str | None = None,
    preheader: str | None = None,
    body_html: str | None = None,
    body_text: str | None = None,
) -> Issue:
    """Change the words of a draft or scheduled issue (the editor's chance before it goes out)."""

    issue = _require(session, issue_id, "edit")
    if subject is not None:
        subject = _one_line(subject, "subject")
        if not subject or len(subject) > SUBJECT_MAX:
            raise InvalidRequest(f"The subject must be 1 to {SUBJECT_MAX} characters.")
        issue.subject = subject
    if preheader is not None:
        issue.preheader = _one_line(preheader, "preheader")[:500]
    if body_html is not None or body_text is not None:
        if issue.kind != NewsletterKind.CAMPAIGN:
            raise InvalidRequest("Only a campaign's body can be edited; a digest is its posts.")
        if body_html is not None:
            issue.body_html = clean_html(body_html, settings.site_url)
        if body_text is not None:
            issue.body_text = body_text.replace("\r\n", "\n").strip()
    issue.updated_at = utcnow()  # a new render cache key for previews and the send
    session.flush()
    return issue


# --- Transitions ---------------------------------------------------------------------------------


def _refusal(issue: Issue, action: str) -> IllegalTransition:
    allowed = " or ".join(s.value for s in ALLOWED[action])
    return IllegalTransition(
        f"Issue {issue.id} is {IssueStatus(issue.status).value}; only {allowed} issues can be "
        f"{PAST[action]}."
    )


def _require(session: Session, issue_id: int, action: str) -> Issue:
    """The issue, if ``action`` is allowed in its current state."""
    issue = get_issue(session, issue_id)
    if issue.status not in ALLOWED[action]:
        raise _refusal(issue, action)
    return issue


def _move(session: Session, issue_id: int, action: str, **values: Any) -> Issue:
    """One conditional UPDATE from an allowed state; the race loser gets IllegalTransition."""
    allowed = [s.value for s in ALLOWED[action]]
    result = session.execute(
        update_issue().where(ISSUES.c.id == issue_id, ISSUES.c.status.in_(allowed)).values(**values)
    )
    issue = get_issue(session, issue_id)
    if not result.rowcount:  # type: ignore[attr-defined]
        raise _refusal(issue, action)
    return issue


def schedule(session: Session, issue_id: int, send_at: datetime) -> Issue:
    """Plan a draft to go out at ``send_at`` (beat's tick starts it); commits."""
    if send_at.tzinfo is None:
        raise InvalidRequest("send_at needs a time zone, e.g. 2030-01-01T08:00:00+01:00.")
    issue = _move(session, issue_id, "schedule", status=S.SCHEDULED.value, send_at=send_at)
    session.commit()
    return issue


def send(
    session: Session,
    settings: Settings,
    issue_id: int,
    queue: TaskQueue,
    now: datetime | None = None,
    *,
    override: str = "",
) -> Issue:
    """Start sending now: snapshot the audience, commit, then enqueue the fan-out.

    A digest that was never planned is planned first; with nothing new it becomes ``skipped``.
    The pre-send check runs first: in "block" mode a failure raises :class:`CheckFailed` (and
    changes nothing) unless ``override`` gives the reason to send anyway, which is recorded.
    """
    now = now or utcnow()
    issue = _require(session, issue_id, "send")
    unplanned = issue.kind == NewsletterKind.DIGEST and issue.window_end is None
    if unplanned and not plan_digest(session, settings, issue, now):
        session.flush()
        issue = _move(
            session,
            issue_id,
            "send",
            status=S.SKIPPED.value,
            status_reason="nothing new since the last digest",
            finished_at=now,
        )
        session.commit()
        return issue
    if issue.kind == NewsletterKind.CAMPAIGN and not issue.subject:
        raise InvalidRequest(f"Issue {issue_id} has no subject yet; edit it first.")
    reason, override = _checked(session, settings, issue_id, override, now)
    highest = session.scalar(select(func.max(SUBSCRIBERS.c.id))) or 0
    issue = _move(
        session,
        issue_id,
        "send",
        status=S.SENDING.value,
        status_reason=reason,
        check_override=override,
        started_at=now,
        finished_at=None,
        held=False,
        max_subscriber_id=highest,
        last_subscriber_id=0,
        fanout_claimed_at=None,
        fanout_finished_at=None,
        attempt_count=0,
        error_count=0,
        mailed_count=0,
        bounce_count=0,
        complaint_count=0,
        send_at=issue.send_at or now,
    )
    session.commit()
    queue.fan_out(issue_id)
    log.info("issue %s: sending started", issue_id)
    return issue


def _checked(
    session: Session, settings: Settings, issue_id: int, override: str, now: datetime
) -> tuple[str, str]:
    """Run the pre-send check as the settings ask: (status reason, recorded override)."""
    mode = settings.presend_mode
    if mode == "off":
        return "", ""
    report = check_issue(session, settings, issue_id)
    if report.passed:
        return "", ""
    if mode == "warn":
        log.warning("issue %s: %s (NEWSLETTER_PRESEND_CHECK=warn)", issue_id, report.summary())
        return f"{report.summary()} (sent anyway: the check only warns here)", ""
    reason = _one_line(override, "override reason")
    if not reason:
        session.rollback()  # a digest planned just now goes back to unplanned
        raise CheckFailed(report)
    log.warning("issue %s: pre-send check overridden: %s", issue_id, reason)
    return "", f"{_when(now)}: {reason} (overrode {report.summary()})"


def start_due(
    session: Session, settings: Settings, queue: TaskQueue, now: datetime | None = None
) -> list[int]:
    """Start every scheduled issue whose time has come and that no editor holds."""
    now = now or utcnow()
    due = list(
        session.scalars(
            select(Issue.id).where(
                Issue.status == IssueStatus.SCHEDULED,
                Issue.send_at <= now,
                Issue.held.is_(False),
            )
        )
    )
    session.commit()
    started = []
    for issue_id in due:
        try:
            send(session, settings, issue_id, queue, now)
            started.append(issue_id)
        except IllegalTransition:
            session.rollback()  # another tick started (or an editor cancelled) it first
        except CheckFailed as exc:
            # Held, so the tick does not check it again every few seconds: an editor fixes it
            # and releases it (or sends it with an override).
            _move(session, issue_id, "hold", held=True, status_reason=exc.report.summary())
            session.commit()
            log.warning("issue %s: held: %s", issue_id, exc.report.summary())
    return started


def pause(session: Session, issue_id: int, reason: str = "paused by an editor") -> Issue:
    """Stop a send within one batch; the rest stays queued for resume. Commits."""
    issue = _move(session, issue_id, "pause", status=S.PAUSED.value, status_reason=reason)
    session.commit()
    return issue


def resume(
    session: Session,
    settings: Settings,
    issue_id: int,
    queue: TaskQueue,
) -> Issue:
    """Continue a paused (or failed) send where it stopped; the error window starts afresh.

    The deliverability guard's counts stay (newsletter/inbound/guard.py): the next hard bounce
    or complaint is judged with everything so far.
    """
    issue = _move(
        session,
        issue_id,
        "resume",
        status=S.SENDING.value,
        status_reason="",
        finished_at=None,
        attempt_count=0,
        error_count=0,
    )
    # Rows whose tasks were dropped while paused become pumpable at once.
    session.execute(
        update(DELIVERIES)
        .where(
            DELIVERIES.c.issue_id == issue_id,
            DELIVERIES.c.status == DeliveryStatus.QUEUED.value,
        )
        .values(enqueued_at=None)
    )
    session.commit()
    queue.fan_out(issue_id)
    return issue


def cancel(session: Session, issue_id: int, reason: str = "cancelled by an editor") -> Issue:
    """Stop for good: queued deliveries become skipped, a running batch stops within one mail."""
    now = utcnow()
    issue = _move(
        session,
        issue_id,
        "cancel",
        status=S.CANCELLED.value,
        status_reason=reason,
        finished_at=now,
    )
    session.execute(
        update(DELIVERIES)
        .where(
            DELIVERIES.c.issue_id == issue_id,
            DELIVERIES.c.status == DeliveryStatus.QUEUED.value,
        )
        .values(status=DeliveryStatus.SKIPPED.value, smtp_response="not sent: issue cancelled")
    )
    session.commit()
    return issue


def hold(session: Session, issue_id: int, held: bool = True) -> Issue:
    """The editor's veto: a held scheduled issue does not go out until released. Commits."""
    issue = _move(session, issue_id, "hold" if held else "release", held=held)
    session.commit()
    return issue


@dataclass(frozen=True)
class Resent:
    """What resend-failed did."""

    issue: Issue
    requeued: int
    not_mailable: int


def resend_failed(
    session: Session,
    settings: Settings,
    issue_id: int,
    queue: TaskQueue,
    now: datetime | None = None,
) -> Resent:
    """Queue the failed deliveries again, except to readers who can no longer be mailed.

    Bounced, unsubscribed and suppressed readers stay failed. A finished issue goes back to
    sending; a paused one stays paused (resume sends them).
    """
    now = now or utcnow()
    issue = _require(session, issue_id, "resend-failed")
    failed = session.execute(
        select(DELIVERIES.c.id, DELIVERIES.c.subscriber_id, SUBSCRIBERS.c.email_key)
        .join(SUBSCRIBERS, SUBSCRIBERS.c.id == DELIVERIES.c.subscriber_id)
        .where(
            DELIVERIES.c.issue_id == issue_id,
            DELIVERIES.c.status == DeliveryStatus.FAILED.value,
        )
    ).all()
    ids = _still_mailable(session, issue, failed, now)
    _requeue(session, ids, now)
    if ids and issue.status in (S.SENT, S.FAILED):
        issue = _move(
            session,
            issue_id,
            "resend-failed",
            status=S.SENDING.value,
            status_reason=f"resending to {len(ids)} failed readers",
            finished_at=None,
            attempt_count=0,
            error_count=0,
        )
    session.commit()
    if ids and issue.status == S.SENDING:
        queue.fan_out(issue_id)
    return Resent(get_issue(session, issue_id), len(ids), len(failed) - len(ids))


def _still_mailable(
    session: Session, issue: Issue, failed: Sequence[Any], now: datetime
) -> list[int]:
    """The failed deliveries whose reader may still get the issue (eligible, not suppressed)."""
    frequency = None if issue.frequency is None else Frequency(issue.frequency).value
    mailable: set[int] = set()
    for chunk in chunks([row.subscriber_id for row in failed], 500):
        mailable.update(
            session.scalars(
                select(SUBSCRIPTIONS.c.subscriber_id)
                .join(SUBSCRIBERS, SUBSCRIBERS.c.id == SUBSCRIPTIONS.c.subscriber_id)
                .where(
                    eligible_clause(issue.newsletter_id, frequency, now),
                    SUBSCRIPTIONS.c.subscriber_id.in_(chunk),
                )
            )
        )
    blocked = suppressed_hashes(
        session, (email_hash(r.email_key) for r in failed if r.subscriber_id in mailable)
    )
    return [
        r.id
        for r in failed
        if r.subscriber_id in mailable and email_hash(r.email_key) not in blocked
    ]


def _requeue(session: Session, delivery_ids: list[int], now: datetime) -> None:
    """Put failed deliveries back in the queue as if never tried."""
    for chunk in chunks(delivery_ids, 500):
        session.execute(
            update(DELIVERIES)
            .where(
                DELIVERIES.c.id.in_(chunk),
                DELIVERIES.c.status == DeliveryStatus.FAILED.value,
            )
            .values(
                status=DeliveryStatus.QUEUED.value,
                enqueued_at=None,
                due_at=now,
                claimed_by="",
                attempts=0,
                smtp_response="",
                smtp_code=None,
            )
        )


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "the start"


# --- Test sends ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TestResult:
    """One address of a test send and what the SMTP server said."""

    address: str
    ok: bool
    answer: str


def test_send(
    session: Session, settings: Settings, issue_id: int, recipients: Sequence[str]
) -> list[TestResult]:
    """Send an issue to a few addresses now, subject prefixed "[TEST]", recorded nowhere.

    Each address gets the issue as a reader who follows every topic and got nothing yet; the
    links in it are inert (they belong to no reader).
    """

    addresses = _test_addresses(recipients)
    issue = get_issue(session, issue_id)
    if issue.kind == NewsletterKind.DIGEST and issue.window_end is None:
        raise InvalidRequest(f"Issue {issue_id} has no posts planned yet; nothing to test.")
    prepared = prepare_issue(session, settings, issue_id)
    transport = get_transport(settings)
    results = []
    for address in addresses:
        frequency = Frequency(issue.frequency).value if issue.frequency else None
        mail = prepared.message_for(inert_reader(address, frequency))
        if mail is None:
            raise InvalidRequest(f"Issue {issue_id} has nothing to send (no posts).")
        message = mark_as_test(settings, mail.message)
        try:
            answer = transport.send(envelope_sender(settings, issue_id, 0), address, message)
            results.append(TestResult(address, True, answer))
        except DeliveryError as exc:
            results.append(TestResult(address, False, str(exc)))
    return results


def _test_addresses(recipients: Sequence[str]) -> list[str]:
    """Validated, de-duplicated test addresses (a handful at most)."""
    if not recipients:
        raise InvalidRequest("Give at least one address to send the test to.")
    if len(recipients) > MAX_TEST_RECIPIENTS:
        raise InvalidRequest(f"A test goes to at most {MAX_TEST_RECIPIENTS} addresses.")
    clean: list[str] = []
    for raw in recipients:
        try:
            address = normalise(str(raw))
        except InvalidAddress as exc:
            raise InvalidRequest(f"{raw!r}: {exc}") from None
        if address.casefold() not in (a.casefold() for a in clean):
            clean.append(address)
    return clean
