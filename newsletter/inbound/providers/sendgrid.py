"""SendGrid's Signed Event Webhook (bounce, dropped, spamreport, delivered) as events.

SendGrid signs ``timestamp + raw body`` with ECDSA P-256 / SHA-256: the base64 DER signature is
in ``X-Twilio-Email-Event-Webhook-Signature``, the timestamp in ``…-Timestamp``, and the
verification key (base64 DER, as SendGrid shows it) is a setting. ``smtp-id`` is the Message-ID
of the mail as we sent it. See
https://www.twilio.com/docs/sendgrid/for-developers/tracking-events/getting-started-event-webhook-security-features
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key

from newsletter.inbound.events import (
    BadPayload,
    EventKind,
    ProviderEvent,
    Unverified,
    message_id,
    text,
)

PROVIDER = "sendgrid"
SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
MAX_EVENTS = 1000  # SendGrid batches events; more than this in one post is not SendGrid


def public_key(setting: str) -> ec.EllipticCurvePublicKey:
    """The verification key from its base64 DER (or PEM) form; ValueError if it is not one."""
    try:
        body = "".join(line for line in setting.splitlines() if not line.startswith("-----"))
        key = load_der_public_key(base64.b64decode(body, validate=True))
    except (binascii.Error, ValueError, UnsupportedAlgorithm) as exc:
        raise ValueError(f"not a base64 DER public key ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ValueError("not an elliptic-curve (P-256) public key")
    return key


def verify(key: ec.EllipticCurvePublicKey, signature: str, timestamp: str, raw: bytes) -> None:
    """Raise Unverified unless SendGrid's key signed ``timestamp + raw``."""
    if not signature or not timestamp:
        raise Unverified(f"missing {SIGNATURE_HEADER} or {TIMESTAMP_HEADER}")
    try:
        decoded = base64.b64decode(signature, validate=True)
        key.verify(decoded, timestamp.encode() + raw, ec.ECDSA(hashes.SHA256()))
    except (binascii.Error, ValueError, InvalidSignature):
        raise Unverified("the SendGrid signature does not hold") from None


def events(raw: bytes) -> list[ProviderEvent]:
    """The events of one (verified) SendGrid post: a JSON array of event objects."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nested too deep to parse
        raise BadPayload("the body is not JSON") from None
    if (
        not isinstance(body, list)
        or not 1 <= len(body) <= MAX_EVENTS
        or not all(isinstance(item, dict) for item in body)
    ):
        raise BadPayload(
            f"not a SendGrid event batch (a JSON array of 1 to {MAX_EVENTS} event objects)"
        )
    return [_event(item) for item in body]


def _event(item: dict[str, Any]) -> ProviderEvent:
    """One SendGrid event; "blocked" bounces and drops count as soft (they may recover)."""
    name = text(item.get("event"), 40)
    kind = EventKind.OTHER
    if name == "bounce":
        hard = text(item.get("type"), 20) != "blocked"
        kind = EventKind.HARD_BOUNCE if hard else EventKind.SOFT_BOUNCE
    elif name == "dropped":
        kind = EventKind.SOFT_BOUNCE
    elif name == "spamreport":
        kind = EventKind.COMPLAINT
    elif name == "delivered":
        kind = EventKind.DELIVERY
    status = text(item.get("status"), 20)
    return ProviderEvent(
        provider=PROVIDER,
        event_id=text(item.get("sg_event_id"), 200),
        kind=kind,
        recipient=text(item.get("email"), 320),
        message_id=message_id(item.get("smtp-id")),
        status=status if status[:1] in ("4", "5") else "",
        diagnostic=text(item.get("reason")) or text(item.get("response")),
        note=name or "event",
    )
