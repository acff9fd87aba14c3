"""send_batch: claim a batch of deliveries, send each over the reused connection, record it.

The rules that make it exactly once at the SMTP boundary:

* rows are claimed atomically (``UPDATE … SET status='sending' … WHERE status='queued'``), so a
  duplicated or retried task finds nothing left to send;
* a mail the server accepted is committed as ``sent`` before the next one is sent on that
  connection, so a worker killed at any moment leaves at most one accepted-but-unrecorded mail per
  connection (it stays ``sending``; recovery re-queues it after the lease and it may go twice);
* temporary failures put rows back to ``queued`` for a retry with backoff, permanent ones are final.

The deliverability guard (newsletter/inbound/guard.py) is judged after each hard bounce: the bounce
is counted on the issue row at once (in the commit that records it), and the rate is its count
over the mails of the batches that ended plus this one's. So one batch never lets the rate pass
the limit, and batches side by side pass it by at most one bounce for each other batch (only a
bounce right after a pause can pass it, and it trips the guard for its batch too); their uncounted
mails only make the guard stricter.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from newsletter.content.selection import Reader, load_readers
from newsletter.delivery.fan_out import pump
from newsletter.delivery.rate_limit import get_rate_limiter
from newsletter.delivery.sent_marks import SentRecorder, batch_connection
from newsletter.inbound.guard import Guard, add_event, pause_reason, trips
from newsletter.issues.queue import TaskQueue
from newsletter.issues.rendering import envelope_sender, prepare_issue
from newsletter.issues.status import finish_if_done, issue_status, set_issue_status, update_issue
from newsletter.mail.transport import PermanentFailure, TemporaryFailure, Transport, get_transport
from newsletter.readers.addresses import email_hash
from newsletter.readers.eligibility import eligible_clause, suppressed_hashes
from newsletter.readers.suppression import suppress
from newsletter.settings import Settings
from newsletter.store.db import CONNECTION_LOST, utcnow
from newsletter.store.models import DeliveryStatus, Issue, IssueStatus, SubscriberStatus
from newsletter.store.queries import (
    DELIVERIES,
    FAILED,
    IN_CHUNK,
    ISSUES,
    QUEUED,
    SENDING,
    SKIPPED,
    SUBSCRIBERS,
    UNFINISHED,
    chunks,
    one_of,
)

log = logging.getLogger(__name__)

WORKER = f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class BatchResult:
    """What one run of :func:`send_batch` did; ``retry_ids`` go back to the broker later."""

    claimed: int = 0
    sent: int = 0
    failed: int = 0
    bounced: int = 0  # of the failed: hard bounces (the answer blamed the mailbox)
    skipped: int = 0
    retry_ids: list[int] = field(default_factory=list)
    retry_in: float = 0.0
    stopped: str = ""


STATUS_CHECK_SECONDS = 1.0  # how often a running batch looks for pause/cancel
MAX_RATE_SLEEP = 2.0  # longer waits for the rate limit give the worker back (task retries)
CONSECUTIVE_4XX_ABORT = 3  # this many 4xx in a row means the server, not the reader, is busy
NOT_ELIGIBLE = "not sent: unsubscribed, paused, bounced or suppressed since the send started"


def backoff_seconds(settings: Settings, retries: int) -> float:
    """Exponential backoff with full jitter in [0.5, 1.5) of the step, capped."""
    step = settings.send_retry_base_seconds * (2 ** min(retries, 16))
    return min(settings.send_retry_max_seconds, step) * (0.5 + random.random())


class DatabaseLost(Exception):
    """The database went away mid-batch; retry later with ``release`` to free this run's rows.

    ``token`` is the claim of the run that died: rows it still holds as ``sending`` go back to
    ``queued`` when the database is back, so the send carries on at once instead of waiting for
    their lease to expire. The row whose mail the server had accepted just before the loss (its
    mark may not have reached the database) may be sent twice: the documented one per connection.
    """

    def __init__(self, token: str, cause: BaseException) -> None:
        super().__init__(f"the database connection was lost mid-batch: {cause}")
        self.token = token


def send_batch(
    settings: Settings,
    issue_id: int,
    delivery_ids: Sequence[int],
    *,
    queue: TaskQueue | None = None,
    retries: int = 0,
    transport: Transport | None = None,
    release: str = "",
) -> BatchResult:
    """Send the still-queued, due deliveries among ``delivery_ids``; safe to run twice.

    Returns what happened; ``retry_ids``/``retry_in`` ask the caller to run again later (SMTP
    4xx, connection trouble or a rate limit). Afterwards the pump is topped up and the issue
    finished when nothing is left. Raises :class:`DatabaseLost` when the database connection
    breaks; the retry passes its ``token`` as ``release`` to free what that run had claimed.
    """
    token = f"{WORKER}:{uuid.uuid4().hex[:8]}"[:120]
    unreleased = release
    try:
        with batch_connection(settings) as (session, recorder):
            if release:
                _release_claim(session, issue_id, release)
                unreleased = ""
            batch = _Batch(session, recorder, settings, issue_id, retries, transport, token)
            result = batch.run(sorted(set(delivery_ids)))
            enqueued = 0
            if queue is not None and (result.claimed or result.stopped):
                enqueued = pump(session, settings, issue_id, queue)
            if result.claimed and not enqueued:  # more batches enqueued: certainly not done yet
                finish_if_done(session, issue_id)
    except CONNECTION_LOST as exc:
        # Still away before the release: the older run's rows are the ones to free next time.
        raise DatabaseLost(unreleased or token, exc) from exc
    return result


def _release_claim(session: Session, issue_id: int, token: str) -> None:
    """Give back the rows a run that lost its database connection still holds as sending."""
    result = session.execute(
        update(DELIVERIES)
        .where(
            DELIVERIES.c.issue_id == issue_id,
            DELIVERIES.c.claimed_by == token,
            DELIVERIES.c.status == SENDING.value,
        )
        .values(status=QUEUED.value, claimed_by="", claimed_at=None)
    )
    released = int(result.rowcount)  # type: ignore[attr-defined]
    session.commit()
    if released:
        log.info("issue %s: %d deliveries of a batch cut off requeued", issue_id, released)


class _Batch:
    """One run of send_batch: claim, check, send and record, one reader at a time."""

    def __init__(
        self,
        session: Session,
        recorder: SentRecorder,
        settings: Settings,
        issue_id: int,
        retries: int,
        transport: Transport | None,
        token: str,
    ) -> None:
        self.session = session
        self.recorder = recorder
        self.settings = settings
        self.issue_id = issue_id
        self.retries = retries
        self.transport = transport
        self.token = token  # this run's claim on its rows
        self.result = BatchResult()
        self.remaining: dict[int, int] = {}  # delivery id -> subscriber id, claimed, no outcome
        self.pending_skips: list[int] = []
        self.lease = float(settings.delivery_lease_seconds)
        self.renewed = time.monotonic()
        self.checked = time.monotonic()
        self.base_attempts = 0
        self.base_errors = 0
        self.counted_done = 0
        self.counted_failed = 0
        # The guard's view after this run's latest hard bounce: (bounces, mails).
        self.bounce_seen: tuple[int, int] | None = None

    # -- the whole run ----------------------------------------------------------------------------

    def run(self, delivery_ids: list[int]) -> BatchResult:
        """Claim, filter, send; every early exit leaves no row claimed by this run."""

        session = self.session
        issue = session.get(Issue, self.issue_id)
        if issue is None or issue.status != IssueStatus.SENDING:
            session.rollback()
            self.result.stopped = "issue not sending"
            return self.result
        self.base_attempts, self.base_errors = issue.attempt_count, issue.error_count
        claimed = self._claim(delivery_ids)
        if not claimed:
            return self.result
        loaded = self._prepare(issue, claimed)
        if loaded is None:
            return self.result
        prepared, readers = loaded
        by_subscriber = {sid: did for did, sid in claimed.items()}
        eligible = self._eligible(readers)
        gone = [did for did, sid in claimed.items() if sid not in eligible]
        if gone:
            self._finalise(gone, SKIPPED, smtp_response=NOT_ELIGIBLE)
            self.result.skipped += len(gone)
        session.commit()
        self.remaining = {did: sid for did, sid in claimed.items() if sid in eligible}
        todo = [r for r in readers if r.subscriber_id in eligible]
        todo.sort(key=lambda r: r.subscriber_id)
        self._send_all(todo, by_subscriber, prepared)
        self._flush_skips()
        self._count_outcomes()
        session.commit()
        return self.result

    def _prepare(self, issue: Issue, claimed: dict[int, int]) -> tuple[Any, list[Reader]] | None:
        """The issue rendered once and the claimed readers; None (issue failed) if it cannot be."""
        frequency = None if issue.frequency is None else issue.frequency.value
        try:
            prepared = prepare_issue(self.session, self.settings, self.issue_id)
            # Only readers who may still get it: unsubscribed, paused or bounced since the
            # fan-out drop out here (suppressions are checked below).
            readers = load_readers(
                self.session,
                issue,
                list(claimed.values()),
                only=eligible_clause(issue.newsletter_id, frequency, utcnow()),
            )
        except Exception as exc:
            self.session.rollback()
            log.exception("issue %s cannot be prepared", self.issue_id)
            self._release(list(claimed), cancelled=False)
            set_issue_status(
                self.session,
                self.issue_id,
                IssueStatus.FAILED,
                f"the issue could not be rendered: {exc}",
                only_from=[IssueStatus.SENDING],
            )
            self.session.commit()
            self.result.stopped = "render error"
            return None
        return prepared, readers

    def _claim(self, delivery_ids: list[int]) -> dict[int, int]:
        """Atomically take the rows still queued and due: delivery id -> subscriber id."""
        now = utcnow()
        claimed: dict[int, int] = {}
        for chunk in chunks(delivery_ids, IN_CHUNK):
            rows = self.session.execute(
                update(DELIVERIES)
                .where(
                    one_of(self.session, DELIVERIES.c.id, chunk),
                    DELIVERIES.c.issue_id == self.issue_id,
                    DELIVERIES.c.status == QUEUED.value,
                    DELIVERIES.c.due_at <= now,
                )
                .values(status=SENDING.value, claimed_at=now, claimed_by=self.token)
                .returning(DELIVERIES.c.id, DELIVERIES.c.subscriber_id)
            )
            claimed.update((did, sid) for did, sid in rows)
        self.session.commit()
        self.result.claimed = len(claimed)
        return claimed

    def _eligible(self, readers: list[Reader]) -> set[int]:
        """Subscriber ids among ``readers`` (all still subscribed) whose address is not
        suppressed."""
        hashes = {r.subscriber_id: email_hash(r.email) for r in readers}
        blocked = suppressed_hashes(self.session, hashes.values())
        return {sid for sid, h in hashes.items() if h not in blocked}

    # -- the send loop ----------------------------------------------------------------------------

    def _send_all(
        self, readers: list[Reader], by_subscriber: dict[int, int], prepared: Any
    ) -> None:
        """Send to each reader in turn; stop early on pause/cancel, server trouble or rate."""

        transport = self.transport or get_transport(self.settings)
        limiter = _rate_limiter(self.settings)
        consecutive_4xx: list[tuple[int, TemporaryFailure]] = []
        deferred: list[tuple[int, TemporaryFailure]] = []
        for reader in readers:
            did = by_subscriber[reader.subscriber_id]
            if self._should_stop():
                break
            self._renew_lease()
            try:
                mail = prepared.message_for(reader)
            except Exception as exc:  # one reader's bad data must not block the others
                log.exception("issue %s: cannot build the mail for delivery %s", self.issue_id, did)
                self._record_failure(did, None, f"internal error building this mail: {exc}")
                continue
            if mail is None:
                self.pending_skips.append(did)
                self.remaining.pop(did, None)
                continue
            if limiter is not None and not self._wait_for_rate(limiter):
                return
            sender = envelope_sender(self.settings, self.issue_id, reader.subscriber_id)
            try:
                # The renderer writes CRLF line ends itself (the contract of OutgoingMail).
                reply = transport.send(sender, reader.email, mail.message, crlf_ok=True)
            except PermanentFailure as exc:
                consecutive_4xx.clear()
                self._record_failure(did, exc, str(exc), email=reader.email)
                if self._guard_due():
                    self._guard_pause()
                    return
                if self._autopause_due():
                    self._autopause(str(exc))
                    return
                continue
            except TemporaryFailure as exc:
                if self._gives_up_on(exc, consecutive_4xx):
                    return
                consecutive_4xx.append((did, exc))
                deferred.append((did, exc))
                continue
            consecutive_4xx.clear()
            self._record_sent(did, reply, mail)
        self._defer(deferred)

    def _wait_for_rate(self, limiter: _RateLimiter) -> bool:
        """Wait for the global send rate; False when the wait is long and the batch went back."""
        wait = limiter.try_acquire(1)
        while wait > 0:
            if wait > MAX_RATE_SLEEP:
                self._retry_remaining(wait, "waiting for the send rate limit")
                return False
            time.sleep(wait)
            wait = limiter.try_acquire(1)
        return True

    def _gives_up_on(
        self, exc: TemporaryFailure, consecutive_4xx: list[tuple[int, TemporaryFailure]]
    ) -> bool:
        """Does this 4xx stop the batch (paused for our setup, or the rest retried later)?"""
        if _is_config_error(exc):
            self._pause_for_config(exc)
            return True
        # No code or 421: the connection or the whole server is in trouble, nobody else in
        # this batch would fare better now; and a run of 4xx means the same. Count no attempt
        # against the readers.
        if exc.code is None or exc.code == 421 or len(consecutive_4xx) + 1 >= CONSECUTIVE_4XX_ABORT:
            self._retry_remaining(self._backoff(), str(exc))
            return True
        return False

    def _should_stop(self) -> bool:
        """Look for pause/cancel about once a second; release the rest when found."""
        if time.monotonic() - self.checked < STATUS_CHECK_SECONDS:
            return False
        self.checked = time.monotonic()
        status = issue_status(self.session, self.issue_id)
        self.session.commit()
        if status == IssueStatus.SENDING.value:
            return False
        self._flush_skips()
        self._release(list(self.remaining), cancelled=status == IssueStatus.CANCELLED.value)
        self.session.commit()
        self.result.stopped = f"issue {status}"
        return True

    def _renew_lease(self) -> None:
        """Keep the claim alive on a long (rate-limited) batch so recovery leaves it alone."""
        if time.monotonic() - self.renewed < self.lease / 3 or not self.remaining:
            return
        for chunk in chunks(list(self.remaining), IN_CHUNK):
            self.session.execute(
                update(DELIVERIES)
                .where(
                    one_of(self.session, DELIVERIES.c.id, chunk),
                    DELIVERIES.c.claimed_by == self.token,
                )
                .values(claimed_at=utcnow())
            )
        self.session.commit()
        self.renewed = time.monotonic()

    # -- recording outcomes ------------------------------------------------------------------------

    def _record_sent(self, did: int, reply: str, mail: Any) -> None:
        """Mark one delivery sent and its posts in the ledger, committed before the next send."""
        if self.pending_skips:
            self._flush_skips()
        subscriber_id = self.remaining.pop(did)
        self.recorder.mark_sent(
            delivery_id=did,
            subscriber_id=subscriber_id,
            issue_id=self.issue_id,
            now=utcnow(),
            code=_reply_code(reply) or 250,
            reply=reply,
            message_id=mail.message_id,
            post_ids=mail.post_ids,
        )
        self.result.sent += 1

    def _record_failure(
        self, did: int, exc: PermanentFailure | None, response: str, email: str = ""
    ) -> None:
        """Mark one delivery failed; a 5xx that blames the mailbox also bounces the address."""
        self._flush_skips(commit=False)
        subscriber_id = self.remaining.get(did)
        self._finalise(
            [did],
            FAILED,
            smtp_response=response,
            smtp_code=None if exc is None else exc.code,
            attempts=True,
        )
        if exc is not None and subscriber_id is not None and _blames_address(exc):
            bounce_address(self.session, subscriber_id, email, str(exc))
            # The guard counts as hard bounces exactly the answers that suppress the address:
            # a policy (5.7.x) or full-mailbox (5.2.x) refusal says nothing about the list's
            # quality and is left to the error auto-pause.
            self.result.bounced += 1
            counted = add_event(self.session, self.issue_id, Guard.BOUNCE)
            if counted is not None:
                # The issue's mails leave out this run's, which are counted when it ends.
                own = self.result.sent + self.result.failed + 1 - self.counted_done
                self.bounce_seen = (counted[0], counted[1] + own)
        self.session.commit()
        self.result.failed += 1

    def _finalise(
        self,
        ids: list[int],
        status: DeliveryStatus,
        *,
        smtp_response: str,
        smtp_code: int | None = None,
        attempts: bool = False,
    ) -> None:
        """Give rows a final status (only rows not already final)."""
        values: dict[str, Any] = {
            "status": status.value,
            "smtp_response": smtp_response[:1000],
            "claimed_by": "",
        }
        if smtp_code is not None:
            values["smtp_code"] = smtp_code
        if attempts:
            values["attempts"] = DELIVERIES.c.attempts + 1
        for chunk in chunks(ids, IN_CHUNK):
            self.session.execute(
                update(DELIVERIES)
                .where(
                    one_of(self.session, DELIVERIES.c.id, chunk),
                    DELIVERIES.c.status.in_([s.value for s in UNFINISHED]),
                )
                .values(**values)
            )
        for did in ids:
            self.remaining.pop(did, None)

    def _flush_skips(self, *, commit: bool = True) -> None:
        """Record readers with nothing to get (no new posts in their topics)."""
        if not self.pending_skips:
            return
        ids, self.pending_skips = self.pending_skips, []
        self._finalise(ids, SKIPPED, smtp_response="nothing new for this reader's topics")
        self.result.skipped += len(ids)
        if commit:
            self.session.commit()

    def _release(self, ids: list[int], *, cancelled: bool, until: datetime | None = None) -> None:
        """Hand claimed rows back: skipped when the issue was cancelled, else queued again."""
        if not ids:
            return
        if cancelled:
            self._finalise(ids, SKIPPED, smtp_response="not sent: the issue was cancelled")
            return
        for chunk in chunks(ids, IN_CHUNK):
            self.session.execute(
                update(DELIVERIES)
                .where(
                    one_of(self.session, DELIVERIES.c.id, chunk),
                    DELIVERIES.c.status == SENDING.value,
                    DELIVERIES.c.claimed_by == self.token,
                )
                .values(status=QUEUED.value, claimed_by="", enqueued_at=until)
            )
        for did in ids:
            self.remaining.pop(did, None)

    def _backoff(self) -> float:
        return backoff_seconds(self.settings, self.retries)

    def _retry_remaining(self, delay: float, why: str) -> None:
        """Queue every unfinished claimed row again and ask the task to retry after ``delay``."""
        ids = list(self.remaining)
        until = utcnow() + timedelta(seconds=delay)
        self._flush_skips(commit=False)
        for chunk in chunks(ids, IN_CHUNK):
            self.session.execute(
                update(DELIVERIES)
                .where(
                    one_of(self.session, DELIVERIES.c.id, chunk),
                    DELIVERIES.c.claimed_by == self.token,
                )
                .values(status=QUEUED.value, claimed_by="", enqueued_at=until, smtp_response=why)
            )
        self.remaining.clear()
        self.session.commit()
        self.result.retry_ids.extend(ids)
        self.result.retry_in = delay
        self.result.stopped = why

    def _defer(self, deferred: list[tuple[int, TemporaryFailure]]) -> None:
        """Per-recipient 4xx: count an attempt; retry later, or give up after the maximum."""
        if not deferred:
            return
        delay = self._backoff()
        until = utcnow() + timedelta(seconds=delay)
        attempts = dict(
            self.session.execute(
                select(DELIVERIES.c.id, DELIVERIES.c.attempts).where(
                    one_of(self.session, DELIVERIES.c.id, [did for did, _ in deferred])
                )
            ).all()
        )
        for did, exc in deferred:
            tries = attempts.get(did, 0) + 1
            if tries >= self.settings.send_max_attempts:
                self._finalise(
                    [did],
                    FAILED,
                    smtp_response=f"gave up after {tries} attempts: {exc}",
                    smtp_code=exc.code,
                    attempts=True,
                )
                self.result.failed += 1
                continue
            self.session.execute(
                update(DELIVERIES)
                .where(DELIVERIES.c.id == did, DELIVERIES.c.claimed_by == self.token)
                .values(
                    status=QUEUED.value,
                    claimed_by="",
                    enqueued_at=until,
                    attempts=DELIVERIES.c.attempts + 1,
                    smtp_code=exc.code,
                    smtp_response=str(exc)[:1000],
                )
            )
            self.remaining.pop(did, None)
            self.result.retry_ids.append(did)
        self.session.commit()
        if self.result.retry_ids:
            self.result.retry_in = delay

    # -- auto-pause --------------------------------------------------------------------------------

    def _autopause_due(self) -> bool:
        attempts = self.base_attempts + self.result.sent + self.result.failed
        errors = self.base_errors + self.result.failed
        return over_error_threshold(self.settings, attempts, errors)

    def _autopause(self, last_error: str) -> None:
        """Too many failures: pause the issue for a person to look, release the rest."""
        attempts = self.base_attempts + self.result.sent + self.result.failed
        errors = self.base_errors + self.result.failed
        self._count_outcomes()
        set_issue_status(
            self.session,
            self.issue_id,
            IssueStatus.PAUSED,
            f"auto-paused: {errors} of {attempts} deliveries failed "
            f"(threshold {self.settings.autopause_error_threshold:.0%}); last answer: "
            f"{last_error}. Check the SMTP server and the list, then resume.",
            only_from=[IssueStatus.SENDING],
        )
        self._release(list(self.remaining), cancelled=False)
        self.session.commit()
        self.result.stopped = "auto-paused"
        log.warning("issue %s auto-paused after %d/%d failures", self.issue_id, errors, attempts)

    def _guard_due(self) -> bool:
        """After a hard bounce: would one more on one more mail pass the guard's limit?"""
        seen, self.bounce_seen = self.bounce_seen, None
        if seen is None or not trips(self.settings, Guard.BOUNCE, *seen):
            return False
        self.bounce_seen = seen  # for the pause's reason
        return True

    def _guard_pause(self) -> None:
        """The hard-bounce rate reached its limit: pause before the next mail, say why."""
        assert self.bounce_seen is not None
        bounces, mailed = self.bounce_seen
        self._count_outcomes()
        set_issue_status(
            self.session,
            self.issue_id,
            IssueStatus.PAUSED,
            pause_reason(self.settings, Guard.BOUNCE, bounces, mailed),
            only_from=[IssueStatus.SENDING],
        )
        self._release(list(self.remaining), cancelled=False)
        self.session.commit()
        self.result.stopped = "guard-paused"
        log.warning(
            "issue %s paused by the guard after %d hard bounces in %d mails",
            self.issue_id,
            bounces,
            mailed,
        )

    def _pause_for_config(self, exc: TemporaryFailure) -> None:
        """Our own SMTP setup was refused: nobody's fault but ours, pause and say so."""
        set_issue_status(
            self.session,
            self.issue_id,
            IssueStatus.PAUSED,
            f"paused: the SMTP server refused our setup ({exc}). Fix NEWSLETTER_SMTP_URL or "
            "the sender address, then resume.",
            only_from=[IssueStatus.SENDING],
        )
        self._release(list(self.remaining), cancelled=False)
        self.session.commit()
        self.result.stopped = "smtp configuration refused"

    def _count_outcomes(self) -> None:
        """Add this run's not yet counted final outcomes to the issue's auto-pause window and
        the guard's mails (its hard bounces were counted as they came)."""
        done = self.result.sent + self.result.failed - self.counted_done
        failed = self.result.failed - self.counted_failed
        if not done:
            return
        self.session.execute(
            update_issue()
            .where(ISSUES.c.id == self.issue_id)
            .values(
                attempt_count=ISSUES.c.attempt_count + done,
                error_count=ISSUES.c.error_count + failed,
                mailed_count=ISSUES.c.mailed_count + done,
            )
        )
        self.counted_done += done
        self.counted_failed += failed


def over_error_threshold(settings: Settings, attempts: int, errors: int) -> bool:
    """True when failures passed the auto-pause threshold over enough attempts."""
    return (
        attempts >= max(1, settings.autopause_min_attempts)
        and errors > settings.autopause_error_threshold * attempts
    )


def bounce_address(session: Session, subscriber_id: int, email: str, detail: str) -> None:
    """A hard bounce: the reader is ``bounced`` and the address suppressed for good."""

    session.execute(
        update(SUBSCRIBERS)
        .where(SUBSCRIBERS.c.id == subscriber_id)
        .values(status=SubscriberStatus.BOUNCED.value, updated_at=utcnow())
    )
    suppress(session, email, "bounce", detail[:1000])


def _blames_address(exc: PermanentFailure) -> bool:
    """Does this 5xx say the mailbox is bad (suppress) rather than refuse this one message?"""
    value = getattr(exc, "bad_address", None)
    return True if value is None else bool(value)


def _is_config_error(exc: TemporaryFailure) -> bool:
    """Our credentials, TLS or sender were refused (H2's TransportConfigError)."""
    return type(exc).__name__ == "TransportConfigError"


def _reply_code(reply: str) -> int | None:
    """The leading three-digit code of an SMTP reply string."""
    head = reply[:3]
    return int(head) if head.isdigit() else None


class _RateLimiter(Protocol):
    def try_acquire(self, n: int = 1) -> float: ...


def _rate_limiter(settings: Settings) -> _RateLimiter | None:
    """The global send-rate limiter (None when no limit is configured)."""
    if not settings.send_rate_per_second and not settings.send_rate_per_hour:
        return None

    limiter: _RateLimiter = get_rate_limiter(settings)
    return limiter
