"""The do-not-mail list over the JSON API: GET/POST /api/v1/suppressions.

Entries are keyed on the address's hash (readers/suppression.py), so the list shows hashes,
never an address we may no longer hold. There is no DELETE: the core lifts no entry but an
erasure's, and that only on the reader's own confirmed signup, so neither does the API. The
list is the readers' (a reader added to it leaves every list): its scopes are subscribers:*.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from newsletter.readers.addresses import email_hash, email_key
from newsletter.readers.erasure import suppress_reader
from newsletter.readers.suppression import is_suppressed, list_suppressions
from newsletter.store.models import Subscriber, Suppression, as_dict
from newsletter.web import db
from newsletter.web.api import bp, require_token
from newsletter.web.api_paging import decode_cursor, page
from newsletter.web.api_schemas import PageQuery
from newsletter.web.api_schemas_readers import (
    SuppressionCreate,
    SuppressionPage,
    SuppressionReply,
)
from newsletter.web.api_subscribers import normalised_address
from newsletter.web.openapi import operation

SUPPRESSIONS = "suppressions"
FIELDS = ("id", "email_hash", "reason", "detail", "created_at")


def _entry(row: Suppression) -> dict[str, Any]:
    """An entry as the API shows it."""
    return as_dict(row, *FIELDS)


@bp.get("/suppressions")
@require_token("subscribers:read")
@operation(tag=SUPPRESSIONS, query=PageQuery, responses={200: SuppressionPage})
def list_suppression_entries(query: PageQuery) -> dict[str, Any]:
    """The do-not-mail list, newest first: each entry's address hash, reason, detail and time
    (the address itself is not stored); paged by ``after``."""
    after = decode_cursor(query.after, [int])
    rows = list_suppressions(db(), before_id=after[0] if after else None, limit=query.limit + 1)
    shown, cursor = page(rows, query.limit, lambda s: [s.id])
    return {"items": [_entry(s) for s in shown], "next": cursor}


@bp.post("/suppressions")
@require_token("subscribers:write")
@operation(
    tag=SUPPRESSIONS,
    body=SuppressionCreate,
    responses={200: SuppressionReply, 201: SuppressionReply},
)
def create_suppression(body: SuppressionCreate) -> tuple[dict[str, Any], int]:
    """Never mail an address again (reason `editor`); a reader with it leaves every list.

    201 when the address is new to the list, else 200: an entry there keeps its first reason
    (but an erasure's, which becomes the editor's). Entries are not lifted through the API.
    """
    address = normalised_address(body.email)
    session = db()
    new = not is_suppressed(session, address)
    try:
        row = suppress_reader(session, address, body.detail)
        session.commit()
    except IntegrityError:  # added concurrently: it is there now, which was asked for
        session.rollback()
        new = False
        row = session.scalars(
            select(Suppression).where(Suppression.email_hash == email_hash(address))
        ).one()
    reader = session.scalar(select(Subscriber.id).where(Subscriber.email_key == email_key(address)))
    return {"suppression": _entry(row), "subscriber_id": reader}, 201 if new else 200
