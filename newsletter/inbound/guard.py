"""The deliverability guard: a send pauses itself before its hard-bounce or spam-complaint rate
passes its limit (``NEWSLETTER_GUARD_BOUNCE_RATE``, ``NEWSLETTER_GUARD_COMPLAINT_RATE``).

The counts live on the issue row, all since the send started (a resume keeps them):
``mailed_count`` (mails with a final SMTP answer), ``bounce_count`` (hard bounces: the SMTP
answers that blame the mailbox, and hard bounces reported later) and ``complaint_count``.
Bounces and complaints are added at once (:func:`add_event`), mails when their batch ends.

The rule (:func:`at_limit`): a rate is ``count / max(mails, NEWSLETTER_GUARD_MIN_SAMPLE)``, and a
guard trips as soon as one more event on one more mail would take it over the limit; so until it
trips, ``count <= limit * max(mails, min_sample)``. It is judged at each event (a hard bounce in a
batch, a bounce or complaint processed here), never when a batch starts: a resumed send goes on
until its next hard bounce or complaint, which pauses it again while the rate is still at the
limit. No per-send override: a send that must go on regardless needs the setting changed.

It sits in the inbound layer because both count here: inbound processing (below the issues
package) and the delivery batches (above it).
"""

from __future__ import annotations

import enum
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from newsletter.settings import Settings
from newsletter.store.models import IssueStatus
from newsletter.store.queries import ISSUES


class Guard(enum.StrEnum):
    """What a guard watches."""

    BOUNCE = "bounce"
    COMPLAINT = "complaint"


SETTING = {
    Guard.BOUNCE: "NEWSLETTER_GUARD_BOUNCE_RATE",
    Guard.COMPLAINT: "NEWSLETTER_GUARD_COMPLAINT_RATE",
}
COUNTER = {Guard.BOUNCE: "bounce_count", Guard.COMPLAINT: "complaint_count"}


def limit_of(settings: Settings, guard: Guard) -> float:
    """The configured limit of one guard (0: off)."""
    if guard == Guard.BOUNCE:
        return settings.guard_bounce_rate
    return settings.guard_complaint_rate


def at_limit(count: int, mails: int, limit: float, min_sample: int) -> bool:
    """True when one more event on one more mail would put the rate over ``limit`` (0: off).

    Nothing to judge before the first event: a send is never stopped for what has not happened.
    """
    return limit > 0 and count > 0 and count + 1 > limit * max(mails + 1, min_sample)


def trips(settings: Settings, guard: Guard, count: int, mails: int) -> bool:
    """:func:`at_limit` with the configured limit and minimum sample."""
    return at_limit(count, mails, limit_of(settings, guard), settings.guard_min_sample)


def pause_reason(settings: Settings, guard: Guard, count: int, mails: int) -> str:
    """What the guard saw and what to do about it, as the issue's status reason."""
    limit = limit_of(settings, guard)
    sample = settings.guard_min_sample
    mails = max(mails, count)  # reports may come before their batch's mails are counted
    setting = SETTING[guard]
    what = "hard-bounced" if guard == Guard.BOUNCE else "were reported as spam"
    over = count > limit * max(mails, sample)
    if mails < sample:
        allowed = "more than" if over else "as many as"
        seen = (
            f"{count} of the first {mails} mails {what}: {allowed} the {_percent(limit)} limit "
            f"({setting}) allows in the first {sample} (NEWSLETTER_GUARD_MIN_SAMPLE)"
        )
    else:
        rate = f"{count} of {mails} mails ({_percent(count / mails)}) {what}"
        passed = "over the" if over else "one more would pass the"
        seen = f"{rate}, {passed} {_percent(limit)} limit ({setting})"
    return f"auto-paused: {seen}. {_advice(guard)}"


def _advice(guard: Guard) -> str:
    """What an editor should look at before resuming."""
    keeps = (
        "then resume. A resumed send keeps these counts: its next {event} pauses it again "
        "while the rate is still at the limit."
    )
    if guard == Guard.BOUNCE:
        return (
            "Those addresses are suppressed already; this many dead mailboxes point to an old "
            "or imported list. Find where these readers came from (`newsletter subscribers "
            "export ADDRESS` shows when one signed up) and take out the rest of that list, "
            + keeps.format(event="hard bounce")
        )
    return (
        "Those readers are unsubscribed and suppressed already; Gmail and Yahoo throttle or "
        "block senders whose complaint rate reaches 0.3%. Check that the others asked for this "
        "newsletter and will recognise its sender and subject, " + keeps.format(event="complaint")
    )


def _percent(share: float) -> str:
    """5%, 5.8%, 0.3%, 0.25%: as many decimals as a small share needs."""
    digits = 1 if share >= 0.01 else 2
    return f"{share * 100:.{digits}f}".rstrip("0").rstrip(".") + "%"


def add_event(session: Session, issue_id: int, guard: Guard) -> tuple[int, int, str] | None:
    """Count one hard bounce or complaint on its issue at once (an atomic increment, so every
    batch and report judges with all of them): (count, mails, status) after it. Commits nothing.

    ``mails`` counts the batches that ended; running ones add theirs to what they know.
    """
    column = ISSUES.c[COUNTER[guard]]
    row = session.execute(
        update(ISSUES)
        .where(ISSUES.c.id == issue_id)
        .values({column: column + 1, ISSUES.c.updated_at: ISSUES.c.updated_at})
        .returning(column, ISSUES.c.mailed_count, ISSUES.c.status)
    ).first()
    if row is None:
        return None
    return int(row[0]), int(row.mailed_count), IssueStatus(row.status).value


def count_report(session: Session, settings: Settings, issue_id: int, guard: Guard) -> bool:
    """Add one hard bounce or complaint reported after the send to its issue, and pause the
    send if it is still sending and this reaches the limit; True when it paused. Commits nothing.
    """
    counted = add_event(session, issue_id, guard)
    if counted is None or counted[2] != IssueStatus.SENDING.value:
        return False  # finished, or paused by an editor or a guard: their reason stands
    count, mails, _ = counted
    if not trips(settings, guard, count, mails):
        return False
    return pause_send(session, issue_id, pause_reason(settings, guard, count, mails))


def pause_send(session: Session, issue_id: int, reason: str) -> bool:
    """Move a sending issue to paused with ``reason``; False when it was not sending.

    Like newsletter.issues.status (which this layer cannot import) it leaves ``updated_at``,
    the render cache's key, alone.
    """
    values: dict[Any, Any] = {
        ISSUES.c.status: IssueStatus.PAUSED.value,
        ISSUES.c.status_reason: reason[:2000],
        ISSUES.c.updated_at: ISSUES.c.updated_at,
    }
    result = session.execute(
        update(ISSUES)
        .where(ISSUES.c.id == issue_id, ISSUES.c.status == IssueStatus.SENDING.value)
        .values(values)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
