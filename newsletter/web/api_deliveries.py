"""An issue's deliveries over the JSON API: GET /api/v1/issues/<id>/deliveries, reader by reader
with status and SMTP answer, in keyset pages. The rows name readers and quote what their mail
servers said, often their address: personal data, so the route asks for ``subscribers:read``
(a send's totals are ``GET /issues/<id>``'s, under ``issues:read``)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from newsletter.issues.deliveries import list_deliveries
from newsletter.store.models import MAX_ID, Issue
from newsletter.web import db
from newsletter.web.api import ApiError, bp, require_token
from newsletter.web.api_paging import decode_cursor, page
from newsletter.web.api_schemas_readers import DeliveryListQuery, DeliveryPage
from newsletter.web.openapi import operation


@bp.get("/issues/<int:issue_id>/deliveries")
@require_token("subscribers:read")
@operation(tag="issues", query=DeliveryListQuery, responses={200: DeliveryPage})
def issue_deliveries(issue_id: int, query: DeliveryListQuery) -> dict[str, Any]:
    """The issue's mail to each reader, in reader-id order: status, attempts, the SMTP code and
    answer, when it was due and sent; of one ``status`` if given; paged by ``after``.

    The answers may quote the reader's address, so the scope is subscribers:read.
    """
    if not 1 <= issue_id <= MAX_ID or db().get(Issue, issue_id) is None:
        raise ApiError(404, f"There is no issue {issue_id}.")
    after = decode_cursor(query.after, [int])
    rows = list_deliveries(
        db(),
        issue_id,
        status=query.status,
        after=after[0] if after else 0,
        limit=query.limit + 1,
    )
    shown, cursor = page(rows, query.limit, lambda r: [r.subscriber_id])
    return {"items": [asdict(r) for r in shown], "next": cursor}
