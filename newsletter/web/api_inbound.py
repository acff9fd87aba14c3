"""POST /api/v1/inbound: inbound mail delivered by webhook (bounces, complaints, unsubscribes).

For mail services that POST each inbound message instead of piping it to a command: the body is
the raw RFC 5322 message (``Content-Type: message/rfc822``), ``?recipient=`` the envelope
recipient when the service knows it (VERP). The same domain core as ``newsletter inbound
process`` decides; processing the same message twice changes nothing, so retries are safe. A
message beyond a limit of newsletter/inbound/limits.py is refused unread and nothing is stored:
413 for its size, 422 for its structure (nesting, parts, headers, recipients).
"""

from __future__ import annotations

from typing import Any

from flask import request

from newsletter.inbound.processing import Result, process_message
from newsletter.web import db, settings
from newsletter.web.api import ApiError, bp, require_token
from newsletter.web.api_schemas import InboundQuery, Outcome
from newsletter.web.openapi import operation

ACCEPTED_TYPES = ("message/rfc822",)


@bp.post("/inbound")
@require_token("inbound:write")
@operation(
    tag="inbound",
    query=InboundQuery,
    body_media="message/rfc822",  # the raw message, read as bytes below
    responses={200: Outcome},
    problems=(422,),
)
def inbound_message(query: InboundQuery) -> tuple[dict[str, Any], int]:
    """Recognise one raw message and act on it; 200 with what was done, 4xx for non-mail."""
    # Mail with attachments is larger than forms: this route has its own body limit (413).
    request.max_content_length = settings().inbound_max_bytes
    if request.mimetype not in ACCEPTED_TYPES:
        raise ApiError(
            415,
            "send the raw message as the body with Content-Type: message/rfc822",
            field="Content-Type",
        )
    raw = request.get_data(cache=False)
    recipient = query.recipient.strip()[:320]
    outcome = process_message(db(), settings(), raw, recipient=recipient)
    if outcome.result == Result.REFUSED:
        # Refused before anything was looked up or written: 413 for size, 422 for structure.
        status = 413 if outcome.limit == "size" else 422
        raise ApiError(status, f"message refused: {outcome.summary}", limit=outcome.limit)
    if not outcome.parsed:
        raise ApiError(400, outcome.summary)
    db().commit()
    return outcome.as_json(), 200
