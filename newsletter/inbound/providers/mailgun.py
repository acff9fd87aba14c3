"""Mailgun webhooks (failed, complained, delivered) as events, their signatures checked.

Each payload is signed: ``signature.signature`` is the hex HMAC-SHA256 of ``timestamp`` +
``token`` under the webhook signing key. A signature older than :data:`MAX_AGE` seconds (or
from the future beyond it) is refused, and so is a token seen before: the caller keeps the
tokens (:func:`verify` asks ``first_use``). Our Message-ID is
``event-data.message.headers.message-id`` (Mailgun keeps the one we set), the VERP address
``event-data.envelope.sender``. See https://documentation.mailgun.com/docs/mailgun/user-manual/tracking-messages/
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from newsletter.inbound.events import (
    BadPayload,
    EventKind,
    ProviderEvent,
    Unverified,
    message_id,
    obj,
    text,
)

PROVIDER = "mailgun"
MAX_AGE = 300  # seconds a signature stays acceptable, either way of our clock


def verify(
    signing_key: str, body: Mapping[str, Any], now: float, first_use: Callable[[str], bool]
) -> None:
    """Raise Unverified unless the payload's signature holds, is fresh and was never seen."""
    signature = obj(body.get("signature"))
    timestamp, token = text(signature.get("timestamp"), 20), text(signature.get("token"), 200)
    presented = text(signature.get("signature"), 200)
    if not (timestamp and token and presented):
        raise Unverified("the Mailgun payload has no signature (timestamp, token, signature)")
    expected = hmac.new(
        signing_key.encode(), (timestamp + token).encode(), hashlib.sha256
    ).hexdigest()
    if not hmac.compare_digest(expected, presented.lower()):
        raise Unverified("the Mailgun signature does not hold")
    try:
        age = abs(now - float(timestamp))
    except ValueError:
        raise Unverified("the Mailgun signature's timestamp is not a number") from None
    if not math.isfinite(age) or age > MAX_AGE:  # "nan" compares false with everything
        raise Unverified(f"the Mailgun signature is more than {MAX_AGE} seconds old", status=403)
    # Checked last: only a genuine, fresh signature uses up its token.
    if not first_use(token):
        raise Unverified("this Mailgun signature token was already used (a replay)", status=403)


def events(body: Mapping[str, Any]) -> list[ProviderEvent]:
    """The event one Mailgun webhook call reports."""
    data = body.get("event-data")
    if not isinstance(data, dict):
        raise BadPayload("not a Mailgun webhook payload (no event-data object)")
    name = text(data.get("event"), 40)
    status = obj(data.get("delivery-status"))
    sender = text(obj(data.get("envelope")).get("sender"), 320)
    event = ProviderEvent(
        provider=PROVIDER,
        event_id=text(data.get("id"), 200),
        kind=EventKind.OTHER,
        recipient=text(data.get("recipient"), 320),
        message_id=message_id(obj(obj(data.get("message")).get("headers")).get("message-id")),
        envelope=(sender,) if sender else (),
        status=_enhanced(status),
        diagnostic=text(status.get("description")) or text(status.get("message")),
        note=name or "event",
    )
    if name == "failed":
        permanent = data.get("severity") == "permanent"
        kind = EventKind.HARD_BOUNCE if permanent else EventKind.SOFT_BOUNCE
        return [replace(event, kind=kind)]
    if name == "complained":
        return [replace(event, kind=EventKind.COMPLAINT)]
    if name == "delivered":
        return [replace(event, kind=EventKind.DELIVERY)]
    return [event]


def _enhanced(status: Mapping[str, Any]) -> str:
    """The enhanced status code Mailgun reports, if any (e.g. "5.1.1")."""
    code = text(status.get("enhanced-code"), 20)
    return code if code[:1] in ("4", "5") else ""
