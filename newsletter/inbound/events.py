"""Feedback a mail provider reports by webhook, as one structured event per recipient.

Each provider module of newsletter/inbound/providers verifies its webhook and turns the payload
into :class:`ProviderEvent` values; :func:`newsletter.inbound.processing.process_event` then acts
on them under the same evidence rules as a bounce or complaint that came by mail. An event only
*names* a mail: the provider's own message id proves nothing about us, so what counts is our
Message-ID (or a VERP return path, or a signed token) that the provider hands back.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from typing import Any

from newsletter.inbound.parsing import Failure, Inbound, MessageKind, Returned

MAX_FIELD = 1000  # characters kept of any provider-supplied text


class EventKind(enum.StrEnum):
    """What a provider says happened to one mail for one recipient."""

    HARD_BOUNCE = "hard-bounce"
    SOFT_BOUNCE = "soft-bounce"
    COMPLAINT = "complaint"
    DELIVERY = "delivery"
    OTHER = "other"  # opens, clicks, auto-replies…: acknowledged, never acted on


class WebhookError(Exception):
    """A webhook request refused before anything is looked up: ``status`` says how."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Unverified(WebhookError):
    """The request's signature or credentials do not hold (401), or are not ours to accept (403)."""

    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(status, message)


class BadPayload(WebhookError):
    """The body is not the provider's payload (400)."""

    def __init__(self, message: str) -> None:
        super().__init__(400, message)


@dataclass(frozen=True)
class ProviderEvent:
    """One provider event about one recipient of one mail."""

    provider: str  # "ses", "postmark", "mailgun", "sendgrid"
    event_id: str  # the provider's id of the event (its retries repeat it)
    kind: EventKind
    recipient: str = ""
    message_id: str = ""  # our Message-ID, as the provider returns it ("" when it does not)
    envelope: tuple[str, ...] = ()  # the MAIL FROM it reports: a VERP address of ours, maybe
    tokens: tuple[str, ...] = ()  # signed tokens from the List-Unsubscribe it returns
    status: str = ""  # enhanced status code, e.g. "5.1.1"
    diagnostic: str = ""  # the remote server's or the provider's words
    note: str = ""  # the provider's name for the event, for OTHER

    def as_inbound(self) -> Inbound:
        """The event as a read report, for the evidence rules and actions mail goes through."""
        returned = Returned(message_id=self.message_id, tokens=self.tokens)
        label = f"{self.provider}:{self.event_id}"[:300]
        if self.kind == EventKind.COMPLAINT:
            return Inbound(
                MessageKind.COMPLAINT,
                message_id=label,
                envelope=self.envelope,
                feedback_type=f"{self.provider} complaint",
                complained=(self.recipient,) if self.recipient else (),
                returned=returned,
            )
        if self.kind in (EventKind.HARD_BOUNCE, EventKind.SOFT_BOUNCE):
            failure = Failure(
                address=self.recipient,
                permanent=self.kind == EventKind.HARD_BOUNCE,
                status=self.status,
                diagnostic=self.diagnostic,
            )
            return Inbound(
                MessageKind.BOUNCE,
                message_id=label,
                envelope=self.envelope,
                failures=(failure,),
                returned=returned,
            )
        return Inbound(MessageKind.UNKNOWN, message_id=label, note=self.describe())

    def digest(self) -> str:
        """A stable key of the event (one unmatched report per event, whatever the retries)."""
        key = "\0".join((self.provider, self.event_id, self.kind.value, self.recipient))
        return hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()

    def describe(self) -> str:
        """The event on one line, for outcomes."""
        what = self.note or self.kind.value
        return f"{self.provider} {what} event {self.event_id[:80]}"


def text(value: object, limit: int = MAX_FIELD) -> str:
    """A provider field as one line of bounded text ("" for anything but a string or number)."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return ""
    return " ".join(str(value).split())[:limit]


def message_id(value: object) -> str:
    """A Message-ID as we store it, ``<local@domain>``, from a provider's spelling of it."""
    raw = text(value, 300).strip().removeprefix("<").removesuffix(">").strip()
    # Some providers drop the angle brackets; a value with spaces or none of "@" is not one.
    if "@" not in raw or any(c in raw for c in " <>"):
        return ""
    return f"<{raw}>"


def obj(value: object) -> dict[str, Any]:
    """A JSON object, or {} for anything else (a malformed field names nothing)."""
    return value if isinstance(value, dict) else {}


def items(value: object, limit: int = 1000) -> list[Any]:
    """A JSON array (its first ``limit`` items), or [] for anything else."""
    return value[:limit] if isinstance(value, list) else []
