"""Amazon SES feedback through SNS: bounce, complaint and delivery notifications as events.

The SNS envelope is verified by newsletter/inbound/providers/sns.py; its ``Message`` is the SES
notification (the "notificationType" of identity notifications or the "eventType" of a
configuration set's event publishing). ``mail.messageId`` is SES's own id and proves nothing; our
Message-ID comes from ``mail.headers`` (sent when "include original headers" is on) or
``mail.commonHeaders.messageId``, the VERP address from ``mail.source``, and our signed tokens
from the List-Unsubscribe header. See
https://docs.aws.amazon.com/ses/latest/dg/notification-contents.html
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from newsletter.inbound.events import (
    BadPayload,
    EventKind,
    ProviderEvent,
    items,
    message_id,
    obj,
    text,
)
from newsletter.inbound.parsing import list_unsubscribe_tokens

PROVIDER = "ses"


def notification(message: Mapping[str, Any]) -> dict[str, Any]:
    """The SES notification inside a verified SNS Notification."""
    try:
        body = json.loads(str(message.get("Message", "")))
    except (ValueError, RecursionError):  # RecursionError: nested too deep to parse
        raise BadPayload("the SNS Message is not an SES notification (JSON)") from None
    if not isinstance(body, dict):
        raise BadPayload("the SNS Message is not an SES notification (JSON object)")
    return body


def events(body: Mapping[str, Any], sns_id: str) -> list[ProviderEvent]:
    """One event per recipient the SES notification names."""
    kind = text(body.get("notificationType") or body.get("eventType"), 40)
    mail = obj(body.get("mail"))
    base = ProviderEvent(
        provider=PROVIDER,
        event_id=text(sns_id, 200),
        kind=EventKind.OTHER,
        message_id=_our_message_id(mail),
        envelope=tuple(a for a in (text(mail.get("source"), 320),) if a),
        tokens=list_unsubscribe_tokens(_headers(mail, "list-unsubscribe")),
        note=kind or "notification",
    )
    if kind == "Bounce":
        return _bounces(obj(body.get("bounce")), base)
    if kind == "Complaint":
        return _complaints(obj(body.get("complaint")), base)
    if kind == "Delivery":
        recipients = obj(body.get("delivery")).get("recipients")
        return [
            replace(base, kind=EventKind.DELIVERY, recipient=text(r, 320))
            for r in items(recipients)
            if isinstance(r, str)
        ] or [replace(base, kind=EventKind.DELIVERY)]
    return [base]


def _bounces(bounce: Mapping[str, Any], base: ProviderEvent) -> list[ProviderEvent]:
    """Permanent bounces are hard; Transient and Undetermined ones soft (they may recover)."""
    permanent = bounce.get("bounceType") == "Permanent"
    kind = EventKind.HARD_BOUNCE if permanent else EventKind.SOFT_BOUNCE
    sub = text(bounce.get("bounceSubType"), 60)
    found = []
    for item in items(bounce.get("bouncedRecipients")):
        recipient = obj(item)
        words = text(recipient.get("diagnosticCode")) or f"{bounce.get('bounceType')} {sub}"
        found.append(
            replace(
                base,
                kind=kind,
                recipient=text(recipient.get("emailAddress"), 320),
                status=text(recipient.get("status"), 20),
                diagnostic=words,
            )
        )
    if not found:
        raise BadPayload("an SES bounce without bouncedRecipients")
    return found


def _complaints(complaint: Mapping[str, Any], base: ProviderEvent) -> list[ProviderEvent]:
    """A complaint per complained-about recipient (type "not-spam" is no complaint)."""
    feedback = text(complaint.get("complaintFeedbackType"), 40)
    if feedback == "not-spam":
        return [replace(base, note="complaint of type not-spam")]
    found = [
        replace(base, kind=EventKind.COMPLAINT, recipient=text(obj(r).get("emailAddress"), 320))
        for r in items(complaint.get("complainedRecipients"))
    ]
    if not found:
        raise BadPayload("an SES complaint without complainedRecipients")
    return found


def _our_message_id(mail: Mapping[str, Any]) -> str:
    """Our Message-ID: the original header when SES returns it, else the common headers'."""
    for value in _headers(mail, "message-id"):
        found = message_id(value)
        if found:
            return found
    return message_id(obj(mail.get("commonHeaders")).get("messageId"))


def _headers(mail: Mapping[str, Any], name: str) -> list[str]:
    """The values of one original header in ``mail.headers`` ([] when SES sent none)."""
    values = []
    for item in items(mail.get("headers"))[:200]:
        header = obj(item)
        if text(header.get("name"), 100).lower() == name:
            values.append(text(header.get("value"), 2000))
    return values
