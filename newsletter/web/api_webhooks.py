"""POST /api/v1/webhooks/<provider>: bounce, complaint and delivery events from mail providers.

These routes authenticate by the provider's signature (or, for Postmark, basic auth), not by our
bearer token: each is off (404) until its secret setting is set, refuses a forged or missing
signature with 401/403 before anything is looked up, and a body that is not the provider's JSON
with 400. Every verified event goes through the same evidence rules as inbound mail
(newsletter/inbound/processing.py): an event about a mail we did not send is recorded as
unmatched (200) and changes nobody; a retried event changes nothing.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

from flask import current_app, request
from limits import RateLimitItemPerSecond

from newsletter.inbound.events import ProviderEvent, WebhookError
from newsletter.inbound.processing import process_event
from newsletter.inbound.providers import mailgun, postmark, sendgrid, ses, sns
from newsletter.web import db, settings
from newsletter.web.api import ApiError, bp, verified_by
from newsletter.web.api_schemas import ProviderEvents, ProviderReply
from newsletter.web.extensions import limiter
from newsletter.web.openapi import Header, operation

# The app may provide another fetcher of SNS certificates and SubscribeURLs (tests do).
SNS_FETCH = "newsletter.sns_fetch"
T = TypeVar("T")
Reply = tuple[dict[str, Any], int]


def webhook(*headers: Header) -> Callable[[Callable[..., Reply]], Callable[..., Reply]]:
    """Document a provider's webhook: its JSON body (read by the route itself, whatever its
    Content-Type), one outcome per event, and the problems of verifying it."""
    return operation(
        tag="webhooks",
        body=ProviderEvents,
        validate_body=False,
        responses={200: ProviderReply},
        problems=(401, 403, 404, 502, 503),
        headers=headers,
    )


@bp.post("/webhooks/ses")
@verified_by("SNS message signature")
@webhook()
def ses_webhook() -> Reply:
    """An SNS message about SES: a subscription to confirm or a notification to act on."""
    topics = settings().ses_topic_arns
    _enabled(bool(topics), "NEWSLETTER_SES_TOPIC_ARNS")
    message = _json_object(request.get_data(cache=False))
    fetch: sns.Fetch = current_app.extensions.get(SNS_FETCH, sns.fetch_https)
    _checked(lambda: sns.verify(message, topics, fetch))
    kind = message["Type"]
    if kind == "SubscriptionConfirmation":
        _checked(lambda: sns.subscribe(message, fetch))
        return {"result": "subscribed", "topic": message["TopicArn"]}, 200
    if kind == "UnsubscribeConfirmation":
        return {"result": "ignored", "topic": message["TopicArn"]}, 200
    body = _checked(lambda: ses.notification(message))
    return _process(_checked(lambda: ses.events(body, str(message.get("MessageId", "")))))


@bp.post("/webhooks/postmark")
@verified_by("HTTP basic auth")
@webhook(Header("Authorization", "HTTP basic auth: the user and password set for Postmark"))
def postmark_webhook() -> Reply:
    """A Postmark bounce, spam complaint or delivery, behind HTTP basic auth."""
    user, password = settings().postmark_webhook_user, settings().postmark_webhook_password
    _enabled(bool(user and password), "NEWSLETTER_POSTMARK_WEBHOOK_USER and …_PASSWORD")
    auth = request.authorization
    presented = (
        (auth.username or "", auth.password or "") if auth and auth.type == "basic" else ("", "")
    )
    _checked(lambda: postmark.verify(user, password, *presented))
    body = _json_object(request.get_data(cache=False))
    return _process(_checked(lambda: postmark.events(body)))


@bp.post("/webhooks/mailgun")
@verified_by("Mailgun HMAC signature")
@webhook()
def mailgun_webhook() -> Reply:
    """A Mailgun event, its HMAC signature fresh and never seen before."""
    key = settings().mailgun_signing_key
    _enabled(bool(key), "NEWSLETTER_MAILGUN_SIGNING_KEY")
    body = _json_object(request.get_data(cache=False))
    _checked(lambda: mailgun.verify(key, body, time.time(), _first_use_of_mailgun_token))
    return _process(_checked(lambda: mailgun.events(body)))


@bp.post("/webhooks/sendgrid")
@verified_by("SendGrid ECDSA signature")
@webhook(
    Header(sendgrid.SIGNATURE_HEADER, "ECDSA signature of timestamp + body"),
    Header(sendgrid.TIMESTAMP_HEADER, "The signed timestamp"),
)
def sendgrid_webhook() -> Reply:
    """A batch of SendGrid events, its ECDSA signature over timestamp and body checked."""
    setting = settings().sendgrid_public_key
    _enabled(bool(setting), "NEWSLETTER_SENDGRID_PUBLIC_KEY")
    try:
        key = sendgrid.public_key(setting)
    except ValueError as exc:
        raise ApiError(503, f"NEWSLETTER_SENDGRID_PUBLIC_KEY is unusable: {exc}") from None
    raw = request.get_data(cache=False)
    signature = request.headers.get(sendgrid.SIGNATURE_HEADER, "").strip()
    timestamp = request.headers.get(sendgrid.TIMESTAMP_HEADER, "").strip()
    _checked(lambda: sendgrid.verify(key, signature, timestamp, raw))
    return _process(_checked(lambda: sendgrid.events(raw)))


def _enabled(enabled: bool, setting: str) -> None:
    """404 for a webhook whose secret is not configured; also bounds the body it may send."""
    if not enabled:
        raise ApiError(404, f"this webhook is off; set {setting} to turn it on")
    request.max_content_length = settings().inbound_max_bytes


def _checked(step: Callable[[], T]) -> T:
    """Run one step of reading or verifying; a WebhookError becomes its JSON error."""
    try:
        return step()
    except WebhookError as exc:
        raise ApiError(exc.status, exc.message) from None


def _json_object(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object (providers post JSON, SNS as text/plain: the type is ignored)."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nested too deep to parse
        raise ApiError(400, "the body is not JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    return body


def _process(events: list[ProviderEvent]) -> Reply:
    """Act on every event, committing each; 200 with one outcome per event."""
    outcomes = []
    for event in events:
        # One commit an event: a collision with a concurrent retry rolls back only this one.
        outcomes.append(process_event(db(), settings(), event))
        db().commit()
    return {"results": [o.as_json() for o in outcomes]}, 200


def _first_use_of_mailgun_token(token: str) -> bool:
    """Mark a Mailgun token used in the limiter's storage; False if it was already."""
    # One hit allowed for longer than a signature stays fresh: a SET NX with a TTL in Redis
    # when configured, so a replay to another web process is refused too.
    once = RateLimitItemPerSecond(1, 2 * mailgun.MAX_AGE + 60)
    return limiter.limiter.hit(once, "newsletter-mailgun-token", token)
