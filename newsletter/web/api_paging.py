"""One pagination style for the API's lists: ``?limit=&after=`` answering ``{"items", "next"}``.

The cursor is opaque to clients: the sort key of a page's last row, JSON in URL-safe base64. A
client passes a page's ``next`` as ``after`` to get the rows after it (keyset paging: a row added
meanwhile neither repeats nor skips one); ``next`` is null on the last page.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from newsletter.web.api import ApiError

T = TypeVar("T")


def encode_cursor(key: list[Any]) -> str:
    """The cursor of a row's sort key."""
    raw = json.dumps(key, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None, types: Sequence[type]) -> list[Any] | None:
    """The sort key in ``cursor`` (each part of the given type); a 400 for a forged one."""
    if cursor is None:
        return None
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error, RecursionError):
        key = None
    if (
        not isinstance(key, list)
        or len(key) != len(types)
        or not all(type(part) is kind for part, kind in zip(key, types, strict=True))
    ):
        raise ApiError(400, "after: not a cursor of this list; pass a page's `next`", field="after")
    return key


def page(rows: list[T], limit: int, key: Callable[[T], list[Any]]) -> tuple[list[T], str | None]:
    """The first ``limit`` of ``rows`` (fetched as limit + 1) and the next cursor, if any."""
    if len(rows) <= limit:
        return rows, None
    shown = rows[:limit]
    return shown, encode_cursor(key(shown[-1]))


def by_id(
    after: str | None,
    limit: int,
    fetch: Callable[[int | None, int], list[T]],
    id_of: Callable[[T], int],
) -> tuple[list[T], str | None]:
    """A page of a list ordered by row id: ``fetch(after_id, limit + 1)`` reads it."""
    key = decode_cursor(after, [int])
    return page(fetch(key[0] if key else None, limit + 1), limit, lambda row: [id_of(row)])
