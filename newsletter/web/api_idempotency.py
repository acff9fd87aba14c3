"""``Idempotency-Key`` on the API's POSTs that create or send: a retried request does it once.

A client that cannot tell whether its POST went through (a timeout, a dropped connection) sends
it again with the same ``Idempotency-Key`` header: the first success is answered again, word for
word (with ``Idempotent-Replayed: true``), and nothing is created or sent twice. The same key
with another request (method, path or body) is a 422; while the first request still runs, a
second with its key is a 409. Keys belong to the token that sent them and are kept 24 hours;
only successes are kept, so a refused request may be corrected and retried with its key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import timedelta
from functools import wraps
from typing import Any, TypeVar

from flask import Response, current_app, g, request
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from newsletter.store.db import utcnow
from newsletter.store.models import IdempotencyKey
from newsletter.web import db
from newsletter.web.api import ApiError
from newsletter.web.openapi import Header

F = TypeVar("F", bound=Callable[..., Any])
KEPT = timedelta(hours=24)
KEY_MAX = 255
REPLAYED_HEADERS = ("ETag",)
IDEMPOTENCY_KEY = Header(
    "Idempotency-Key",
    "A unique string (1-255 visible ASCII characters) per request: a retry with the same key "
    "and body answers the first success again; another body is a 422.",
)


def idempotent(view: F) -> F:
    """Honour ``Idempotency-Key`` on ``view``; put it under ``require_token``."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        key = request.headers.get(IDEMPOTENCY_KEY.name)
        if key is None:
            return view(*args, **kwargs)
        key = key.strip()
        if not 1 <= len(key) <= KEY_MAX or not all(" " < c <= "~" for c in key):
            raise ApiError(
                400,
                f"Idempotency-Key: 1 to {KEY_MAX} visible ASCII characters",
                field=IDEMPOTENCY_KEY.name,
            )
        token_id = g.api_token.id
        fingerprint = _fingerprint()
        replay = _earlier(token_id, key, fingerprint)
        if replay is not None:
            return replay
        row_id = _claim(token_id, key, fingerprint)
        try:
            response = current_app.make_response(view(*args, **kwargs))
        except BaseException:
            _release(row_id)
            raise
        if 200 <= response.status_code < 300:
            _keep(row_id, response)
        else:
            _release(row_id)
        return response

    return wrapper  # type: ignore[return-value]


def _fingerprint() -> str:
    """What makes two requests the same: method, path and body."""
    digest = hashlib.sha256()
    for part in (request.method.encode(), request.path.encode(), request.get_data(cache=True)):
        digest.update(len(part).to_bytes(8, "big") + part)
    return digest.hexdigest()


def _earlier(token_id: int, key: str, fingerprint: str) -> Response | None:
    """The answer to replay for this key, if a request with it succeeded; 422/409 otherwise."""
    session = db()
    # A key older than we keep them is free again.
    session.execute(
        delete(IdempotencyKey).where(
            IdempotencyKey.api_token_id == token_id,
            IdempotencyKey.key == key,
            IdempotencyKey.created_at < utcnow() - KEPT,
        )
    )
    session.commit()
    row = session.scalar(
        select(IdempotencyKey).where(
            IdempotencyKey.api_token_id == token_id, IdempotencyKey.key == key
        )
    )
    if row is None:
        return None
    if row.fingerprint != fingerprint:
        raise ApiError(
            422,
            "this Idempotency-Key was used for another request; use a new key for a new request",
            field=IDEMPOTENCY_KEY.name,
        )
    if row.status is None:
        raise ApiError(
            409, "a request with this Idempotency-Key is still running; retry in a moment"
        )
    response = Response(row.body, status=row.status, mimetype="application/json")
    for name, value in (row.headers or {}).items():
        response.headers[name] = value
    response.headers["Idempotent-Replayed"] = "true"
    return response


def _claim(token_id: int, key: str, fingerprint: str) -> int:
    """Record the key as running (committed: a concurrent twin sees it); 409 if it lost."""
    session = db()
    row = IdempotencyKey(api_token_id=token_id, key=key, fingerprint=fingerprint)
    session.add(row)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise ApiError(
            409, "a request with this Idempotency-Key is still running; retry in a moment"
        ) from None
    return row.id


def _keep(row_id: int, response: Response) -> None:
    """Store the success to replay."""
    session = db()
    row = session.get(IdempotencyKey, row_id)
    if row is None:
        return
    row.status = response.status_code
    row.body = response.get_data(as_text=True)
    row.headers = {n: response.headers[n] for n in REPLAYED_HEADERS if n in response.headers}
    session.commit()


def _release(row_id: int) -> None:
    """Forget a key whose request did not succeed."""
    session = db()
    session.rollback()
    session.execute(delete(IdempotencyKey).where(IdempotencyKey.id == row_id))
    session.commit()
