"""Delivering the outbox: one signed POST an attempt, retries with backoff, disabling, the sweep.

An attempt first claims its row (attempts + 1, due again only after a lease), commits, and only
then POSTs, with no transaction open while it waits for the receiver: so a duplicate task, or
the sweep, finds the row taken and does nothing, and a worker that dies mid-attempt leaves a
row the sweep picks up once the lease is over (the attempt counted, so retries stay bounded).

* A 2xx answer delivers it. Anything else (another status, a timeout, a refused connection) is
  tried again after ``webhook_retry_base_seconds * 4^(n-1)`` seconds (at most
  ``webhook_retry_max_seconds``) until ``webhook_max_attempts``; redirects are not followed.
* A host that is no public address is refused at connect time (:mod:`content.public_http`) and
  fails the delivery at once: trying again would be refused again.
* An endpoint is disabled, with the reason, when ``webhook_disable_after_failures`` deliveries
  in a row failed for good, or when none of its attempts succeeded for
  ``webhook_disable_after_hours``. A success resets both counts.

A retry due within :data:`COUNTDOWN_LIMIT` is enqueued with a countdown; a later one is left to
the sweep, so no worker holds a message for hours (Redis redelivers held messages after its
visibility timeout). :func:`sweep`, run by every tick, enqueues pending rows that are overdue;
:func:`prune`, run with it, deletes finished deliveries after :data:`RETENTION`.
"""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import requests
from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from newsletter.content.public_http import BlockedAddress, check_host, public_session
from newsletter.hooks.endpoints import disable
from newsletter.hooks.queue import WebhookQueue
from newsletter.hooks.signing import signed_headers
from newsletter.settings import Settings
from newsletter.store.db import get_sessionmaker, utcnow
from newsletter.store.models import (
    WebhookAttempt,
    WebhookDelivery,
    WebhookDeliveryStatus,
    WebhookEndpoint,
)

AGENT = "newsletter-webhooks/1"
# What is kept of an answer's body, and of an error's text.
MAX_RESPONSE_BYTES = 1024
MAX_ERROR_CHARS = 500
# Retries due within this many seconds get a countdown message; later ones wait for the sweep.
COUNTDOWN_LIMIT = 600.0
# A countdown task may run a moment early on a worker whose clock is behind: it still counts
# as due (a lease is far longer, so a running attempt is never taken twice).
CLOCK_SLACK = timedelta(seconds=5)
# The sweep: a due row is presumed lost this long after it was due, and enqueued again at most
# this often (a backlog behind busy workers is not enqueued once a tick); at most this many a tick.
SWEEP_GRACE = timedelta(seconds=60)
SWEEP_REPEAT = timedelta(seconds=300)
SWEEP_BATCH = 500
# Finished deliveries (and their attempts) are kept this long for `deliveries`, then pruned.
RETENTION = timedelta(days=30)


class Result:
    """What one call of :func:`deliver` came to."""

    DELIVERED = "delivered"
    RETRY = "retry"  # failed; due again later
    FAILED = "failed"  # failed for good
    SKIPPED = "skipped"  # not due, already done, taken by another attempt, or endpoint disabled


@dataclass(frozen=True)
class Answer:
    """What the receiver did with one POST (or why it never answered)."""

    status_code: int | None
    body: str
    error: str
    duration_ms: int
    refused: bool = False  # the address is not a public one: no retry

    @property
    def ok(self) -> bool:
        """True for a 2xx answer."""
        return self.status_code is not None and 200 <= self.status_code < 300


@dataclass(frozen=True)
class Outcome:
    """What :func:`deliver` did to one delivery."""

    delivery_id: int
    result: str
    status_code: int | None = None
    error: str = ""
    retry_in: float | None = None  # seconds until the next attempt, when one is due


@dataclass(frozen=True)
class _Claim:
    """A delivery taken for one attempt: where it goes and what is signed."""

    url: str
    secret: str
    message_id: str
    body: bytes


def backoff_seconds(settings: Settings, attempts: int) -> float:
    """How long after the ``attempts``-th failed attempt the next one is due."""
    delay = settings.webhook_retry_base_seconds * 4 ** max(0, attempts - 1)
    return float(min(delay, settings.webhook_retry_max_seconds))


def lease_seconds(settings: Settings) -> float:
    """How long a claimed row is left alone: longer than any attempt can take."""
    return 2 * settings.webhook_timeout_seconds + 60


def body_of(payload: dict[str, Any]) -> bytes:
    """The exact bytes that are signed and sent."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def deliver(
    settings: Settings, delivery_id: int, queue: WebhookQueue, now: datetime | None = None
) -> Outcome:
    """Make one attempt at a due delivery and record it; a short retry is enqueued on ``queue``."""
    factory = get_sessionmaker(settings.database_url)
    with factory() as session:
        claim = _claim(session, settings, delivery_id, now or utcnow())
        session.commit()
    if claim is None:
        return Outcome(delivery_id, Result.SKIPPED)
    answer = _post(settings, claim)
    with factory() as session:
        outcome = record(session, settings, delivery_id, answer, utcnow())
        session.commit()
    if outcome.retry_in is not None and outcome.retry_in <= COUNTDOWN_LIMIT:
        queue.deliver(delivery_id, countdown=outcome.retry_in)
    return outcome


def _claim(session: Session, settings: Settings, delivery_id: int, now: datetime) -> _Claim | None:
    """Take a due pending delivery of an enabled endpoint for one attempt (caller commits)."""
    taken = session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery_id,
            WebhookDelivery.status == WebhookDeliveryStatus.PENDING,
            WebhookDelivery.next_attempt_at <= now + CLOCK_SLACK,
            WebhookDelivery.endpoint_id.in_(
                select(WebhookEndpoint.id).where(WebhookEndpoint.enabled.is_(True))
            ),
        )
        .values(
            attempts=WebhookDelivery.attempts + 1,
            next_attempt_at=now + timedelta(seconds=lease_seconds(settings)),
        )
        .execution_options(synchronize_session=False)
    )
    if not taken.rowcount:  # type: ignore[attr-defined]
        return None
    delivery = session.get_one(WebhookDelivery, delivery_id)
    endpoint = session.get_one(WebhookEndpoint, delivery.endpoint_id)
    return _Claim(endpoint.url, endpoint.secret, delivery.message_id, body_of(delivery.payload))


def _post(settings: Settings, claim: _Claim) -> Answer:
    """POST the signed body once and read the start of the answer; never raises."""
    timeout = settings.webhook_timeout_seconds
    headers = signed_headers(claim.secret, claim.message_id, int(time.time()), claim.body)
    headers["user-agent"] = AGENT
    started = time.monotonic()

    def took() -> int:
        return int((time.monotonic() - started) * 1000)

    if settings.webhook_allow_private_networks:
        http = requests.Session()
        http.trust_env = False  # an environment proxy would be the one connecting
    else:
        http = public_session()
    try:
        with http:
            if not settings.webhook_allow_private_networks:
                # Names the URL's host in the error; the connection checks the address again.
                parts = urlsplit(claim.url)
                default_port = 443 if parts.scheme == "https" else 80
                check_host(parts.hostname or "", parts.port or default_port)
            with http.post(
                claim.url,
                data=claim.body,
                headers=headers,
                timeout=(timeout, timeout),
                allow_redirects=False,
                stream=True,
            ) as response:
                text = _start_of(response, started + timeout)
                code = response.status_code
                error = "" if 200 <= code < 300 else f"answered HTTP {code}"
                return Answer(code, text, error, took())
    except BlockedAddress as exc:
        return Answer(
            None,
            "",
            f"refused: {exc} (set NEWSLETTER_WEBHOOK_ALLOW_PRIVATE_NETWORKS=true to deliver to "
            "private networks)",
            took(),
            refused=True,
        )
    except socket.gaierror as exc:
        return Answer(None, "", f"could not resolve the host: {exc.strerror or exc}", took())
    except requests.Timeout:
        return Answer(None, "", f"no answer within {timeout:g} seconds", took())
    except (requests.RequestException, OSError, ValueError) as exc:
        return Answer(None, "", f"{type(exc).__name__}: {_innermost(exc)}", took())


def _start_of(response: requests.Response, deadline: float) -> str:
    """At most MAX_RESPONSE_BYTES of the body, read until the deadline (a trickle is cut)."""
    body = bytearray()
    try:
        for chunk in response.iter_content(256):
            body.extend(chunk)
            if len(body) >= MAX_RESPONSE_BYTES or time.monotonic() > deadline:
                break
    except (requests.RequestException, OSError):
        pass  # the status is the answer; a body cut short is still shown as far as it came
    return bytes(body[:MAX_RESPONSE_BYTES]).decode("utf-8", "replace")


def _innermost(exc: BaseException) -> str:
    """The most specific message of a chained exception, shortened."""
    while exc.__context__ is not None and not str(exc):
        exc = exc.__context__
    return str(exc)[:MAX_ERROR_CHARS]


def record(
    session: Session, settings: Settings, delivery_id: int, answer: Answer, now: datetime
) -> Outcome:
    """Record an attempt's answer: delivered, due again after a backoff, or failed for good."""
    delivery = session.get_one(WebhookDelivery, delivery_id)
    endpoint = session.get_one(WebhookEndpoint, delivery.endpoint_id)
    session.add(
        WebhookAttempt(
            delivery_id=delivery.id,
            attempted_at=now,
            duration_ms=answer.duration_ms,
            status_code=answer.status_code,
            response_body=answer.body,
            error=answer.error[:MAX_ERROR_CHARS],
        )
    )
    delivery.last_status_code = answer.status_code
    delivery.last_error = answer.error[:MAX_ERROR_CHARS]
    if answer.ok:
        delivery.status = WebhookDeliveryStatus.DELIVERED
        delivery.next_attempt_at = None
        delivery.finished_at = now
        endpoint.consecutive_failures = 0
        endpoint.failing_since = None
        endpoint.last_success_at = now
        session.flush()
        return Outcome(delivery.id, Result.DELIVERED, answer.status_code)
    endpoint.failing_since = endpoint.failing_since or now
    if answer.refused or delivery.attempts >= settings.webhook_max_attempts:
        delivery.status = WebhookDeliveryStatus.FAILED
        delivery.next_attempt_at = None
        delivery.finished_at = now
        endpoint.consecutive_failures += 1
        _disable_if_failing(settings, endpoint, answer, now)
        session.flush()
        return Outcome(delivery.id, Result.FAILED, answer.status_code, answer.error)
    retry_in = backoff_seconds(settings, delivery.attempts)
    delivery.next_attempt_at = now + timedelta(seconds=retry_in)
    _disable_if_failing(settings, endpoint, answer, now)
    session.flush()
    return Outcome(delivery.id, Result.RETRY, answer.status_code, answer.error, retry_in)


def _disable_if_failing(
    settings: Settings, endpoint: WebhookEndpoint, answer: Answer, now: datetime
) -> None:
    """Disable an endpoint that failed too many deliveries in a row, or for too long."""
    if not endpoint.enabled:
        return
    failing_for = now - (endpoint.failing_since or now)
    if endpoint.consecutive_failures >= settings.webhook_disable_after_failures:
        why = f"{endpoint.consecutive_failures} deliveries in a row failed"
    elif failing_for >= timedelta(hours=settings.webhook_disable_after_hours):
        why = f"no attempt succeeded for {settings.webhook_disable_after_hours:g} hours"
    else:
        return
    disable(endpoint, f"{why}; the last: {answer.error[:200]}", now)


def sweep(session: Session, queue: WebhookQueue, now: datetime | None = None) -> int:
    """Enqueue pending deliveries of enabled endpoints that are overdue (their message lost, or
    their retry too far off for a countdown); how many (caller's session is committed here)."""
    now = now or utcnow()
    ids = list(
        session.scalars(
            select(WebhookDelivery.id)
            .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
            .where(
                WebhookEndpoint.enabled.is_(True),
                WebhookDelivery.status == WebhookDeliveryStatus.PENDING,
                WebhookDelivery.next_attempt_at <= now - SWEEP_GRACE,
                or_(
                    WebhookDelivery.enqueued_at.is_(None),
                    WebhookDelivery.enqueued_at <= now - SWEEP_REPEAT,
                ),
            )
            .order_by(WebhookDelivery.next_attempt_at)
            .limit(SWEEP_BATCH)
        )
    )
    if not ids:
        return 0
    session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id.in_(ids))
        .values(enqueued_at=now)
        .execution_options(synchronize_session=False)
    )
    session.commit()  # before enqueueing: a worker must not find the row still being swept
    for delivery_id in ids:
        queue.deliver(delivery_id)
    return len(ids)


def prune(session: Session, now: datetime | None = None) -> int:
    """Delete up to SWEEP_BATCH deliveries finished more than RETENTION ago, with their
    attempts; how many (caller commits)."""
    before = (now or utcnow()) - RETENTION
    ids = list(
        session.scalars(
            select(WebhookDelivery.id)
            .where(
                WebhookDelivery.status != WebhookDeliveryStatus.PENDING,
                WebhookDelivery.finished_at < before,
            )
            .limit(SWEEP_BATCH)
        )
    )
    if ids:
        session.execute(delete(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(ids)))
        session.execute(delete(WebhookDelivery).where(WebhookDelivery.id.in_(ids)))
    return len(ids)
