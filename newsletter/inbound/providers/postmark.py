"""Postmark bounce, spam-complaint and delivery webhooks as events.

Postmark signs nothing: the webhook URL carries HTTP basic auth credentials that only we and
Postmark know (set them in the webhook's URL at Postmark), compared in constant time. Postmark's
``MessageID`` is its own id and proves nothing about us; our Message-ID comes from the original
``Headers`` when the payload has them, from the bounce dump in ``Content`` (the remote server's
report, which quotes our mail: "include bounce content" in the webhook's settings), or from the
``Metadata`` field ``message-id`` (an ``X-PM-Metadata-message-id`` header on the mail). See
https://postmarkapp.com/developer/webhooks/bounce-webhook
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from newsletter.inbound.events import (
    BadPayload,
    EventKind,
    ProviderEvent,
    Unverified,
    items,
    message_id,
    obj,
    text,
)
from newsletter.inbound.limits import InboundRefused
from newsletter.inbound.parsing import NotAMessage, Returned, list_unsubscribe_tokens, read_message

PROVIDER = "postmark"
MAX_DUMP = 1024 * 1024  # bytes of the bounce dump read for the mail it quotes
# Bounce types that say the address is dead; the rest of the delivery failures may recover.
HARD = frozenset({"HardBounce", "BadEmailAddress", "ManuallyDeactivated"})
SOFT = frozenset(
    {"SoftBounce", "Transient", "DnsError", "Blocked", "SMTPApiError", "Undeliverable", "Unknown"}
)


def verify(user: str, password: str, presented_user: str, presented_password: str) -> None:
    """Raise Unverified unless the request's basic auth is the configured pair."""
    good_user = hmac.compare_digest(presented_user.encode(), user.encode())
    good_password = hmac.compare_digest(presented_password.encode(), password.encode())
    if not (good_user and good_password):
        raise Unverified("wrong or missing HTTP basic auth credentials for the Postmark webhook")


def events(body: Mapping[str, Any]) -> list[ProviderEvent]:
    """The event one Postmark webhook call reports."""
    record = text(body.get("RecordType"), 40)
    kind_name = text(body.get("Type"), 40)
    headers = [obj(h) for h in items(body.get("Headers"), 200)]
    dump = _dump(body.get("Content"))
    event = ProviderEvent(
        provider=PROVIDER,
        event_id=text(body.get("ID") or body.get("MessageID"), 200),
        kind=EventKind.OTHER,
        recipient=text(body.get("Email") or body.get("Recipient"), 320),
        message_id=_our_message_id(body, headers, dump),
        tokens=list_unsubscribe_tokens(_header(headers, "list-unsubscribe")) or dump.tokens,
        diagnostic=text(body.get("Details")) or text(body.get("Description")),
        note=f"{record} {kind_name}".strip() or "record",
    )
    if not record:
        raise BadPayload("not a Postmark webhook payload (no RecordType)")
    if record == "Delivery":
        return [_as(event, EventKind.DELIVERY)]
    if record == "SpamComplaint" or (record == "Bounce" and kind_name == "SpamComplaint"):
        return [_as(event, EventKind.COMPLAINT)]
    if record == "Bounce" and kind_name in HARD:
        return [_as(event, EventKind.HARD_BOUNCE)]
    if record == "Bounce" and kind_name in SOFT:
        return [_as(event, EventKind.SOFT_BOUNCE)]
    return [event]


def _our_message_id(body: Mapping[str, Any], headers: list[dict[str, Any]], dump: Returned) -> str:
    """Our Message-ID from the original headers, the bounce dump or the metadata we set."""
    for value in [*_header(headers, "message-id"), dump.message_id]:
        found = message_id(value)
        if found:
            return found
    return message_id(obj(body.get("Metadata")).get("message-id"))


def _dump(content: object) -> Returned:
    """What the bounce dump quotes of our mail (nothing when there is no readable dump)."""
    if not isinstance(content, str) or not content.strip():
        return Returned()
    try:
        report = read_message(content.encode("utf-8", "replace"), max_bytes=MAX_DUMP)
    except (NotAMessage, InboundRefused):
        return Returned()
    return report.returned or Returned()


def _header(headers: list[dict[str, Any]], name: str) -> list[str]:
    """The values of one original header ([] when Postmark sent none)."""
    return [text(h.get("Value"), 2000) for h in headers if text(h.get("Name"), 100).lower() == name]


def _as(event: ProviderEvent, kind: EventKind) -> ProviderEvent:
    """The event with its kind decided."""
    return replace(event, kind=kind)
