"""SQL helpers of the send path: table handles, id lists as one parameter, insert-or-ignore.

The send path speaks SQLAlchemy Core, not ORM objects (a keyset scan is ~8x faster that way);
these are the handles and statements its modules share.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    String,
    Table,
    any_,
    literal,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from newsletter.store.models import (
    Delivery,
    DeliveryStatus,
    Issue,
    SentPost,
    Subscriber,
    Subscription,
    Suppression,
)

DELIVERIES = cast(Table, Delivery.__table__)


ISSUES = cast(Table, Issue.__table__)


SUBSCRIPTIONS = cast(Table, Subscription.__table__)


SUBSCRIBERS = cast(Table, Subscriber.__table__)


SUPPRESSIONS = cast(Table, Suppression.__table__)


SENT_POSTS = cast(Table, SentPost.__table__)


QUEUED, SENDING, SENT = DeliveryStatus.QUEUED, DeliveryStatus.SENDING, DeliveryStatus.SENT


FAILED, SKIPPED = DeliveryStatus.FAILED, DeliveryStatus.SKIPPED


UNFINISHED = (QUEUED, SENDING)


IN_CHUNK = 500  # SQLite allows 999 bound parameters per statement


def one_of(
    session: Session, column: Any, values: Sequence[Any], *, text: bool = False
) -> ColumnElement[bool]:
    """``column IN (values)`` for a batch's ids (or ``text`` values).

    On PostgreSQL it is ``column = ANY(array)`` with ONE parameter: the SQL is the same for every
    batch, so SQLAlchemy and psycopg build and parse it once, where an IN list of 500 bound
    values costs ~10 ms of Python a statement. SQLite has no arrays: an IN list there (callers
    keep lists under its 999-parameter limit with :func:`chunks`).
    """
    if session.get_bind().dialect.name == "postgresql":
        item = String() if text else BigInteger()
        return cast(
            ColumnElement[bool], column == any_(literal(list(values), postgresql.ARRAY(item)))
        )
    return cast(ColumnElement[bool], column.in_(values))


def chunks(values: Sequence[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive slices of at most ``size`` items."""
    for i in range(0, len(values), max(1, size)):
        yield list(values[i : i + size])


def insert_ignore(
    session: Session, table: Table, rows: list[dict[str, Any]], *, count: bool = False
) -> int:
    """INSERT many rows, skipping those that hit a unique key (PostgreSQL and SQLite).

    With ``count`` it returns how many rows were new (RETURNING), else 0.
    """
    if not rows:
        return 0
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        stmt: Any = postgresql.insert(table).on_conflict_do_nothing()
    elif dialect == "sqlite":
        stmt = sqlite.insert(table).on_conflict_do_nothing()
    else:  # pragma: no cover - only the two supported databases
        raise RuntimeError(f"unsupported database {dialect!r}")
    if not count:
        session.execute(stmt, rows)
        return 0
    key = next(iter(table.primary_key.columns))
    return len(session.execute(stmt.returning(key), rows).all())
