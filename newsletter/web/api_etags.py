"""Conditional updates for the API: ``ETag`` on what may be edited, ``If-Match`` on the edit.

A client reads an issue or a schedule (its answer carries an ``ETag``), then sends its PATCH with
``If-Match: <that tag>``: if someone changed the row in between, the PATCH is refused with 412
and the current tag, instead of silently overwriting their change. ``If-Match`` is optional (an
edit without it applies, as before); ``*`` matches any. The tag is a strong validator: a hash of
the row's stored fields (not of times computed on the fly, such as a schedule's next runs).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from flask import request
from sqlalchemy.orm import Session

from newsletter.issues.summary import describe
from newsletter.store.models import Issue, Schedule, as_dict
from newsletter.web.api import ApiError
from newsletter.web.openapi import Header

IF_MATCH = Header(
    "If-Match",
    "The ETag this edit is based on: 412 if the resource changed since. Optional.",
)
SCHEDULE_FIELDS = (
    "id",
    "newsletter_id",
    "name",
    "cron",
    "timezone",
    "frequency",
    "reader_local_time",
    "prepare_minutes",
    "enabled",
)


def etag(data: Any) -> str:
    """A strong entity tag of JSON-able ``data``."""
    raw = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str).encode()
    return '"' + hashlib.sha256(raw).hexdigest()[:32] + '"'


def issue_etag(issue: Issue) -> str:
    """The tag of an issue's current state."""
    return etag(describe(issue).to_json())


def schedule_etag(schedule: Schedule) -> str:
    """The tag of a schedule's stored settings."""
    return etag(as_dict(schedule, *SCHEDULE_FIELDS))


def locked(session: Session, model: type[Issue] | type[Schedule], row_id: int) -> Any:
    """The row, locked until the transaction ends (PostgreSQL), so that no edit lands between
    the If-Match check and ours; None when there is none (the core then answers 404)."""
    return session.get(model, row_id, with_for_update=True, populate_existing=True)


def check_if_match(current: str) -> None:
    """412 when the request's If-Match names tags and none is ``current``."""
    header = request.headers.get("If-Match")
    if header is None or header.strip() == "*":
        return
    # Strong comparison (RFC 9110 13.1.1): a weak tag never matches.
    tags = {tag.strip() for tag in header.split(",")}
    if current not in tags:
        raise ApiError(
            412,
            "the resource changed since you read it: read it again, then repeat the edit "
            "with its new ETag in If-Match",
            etag=current,
        )
