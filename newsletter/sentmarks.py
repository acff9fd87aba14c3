"""The hot path of a send: record "sent" (and the posts in the ledger) right after SMTP said 250.

This runs once per mail between two SMTP transactions, so it is kept to one statement and one
commit, with no ORM objects and no statement building per mail:

* PostgreSQL: one prepared statement (a data-modifying CTE: mark the delivery sent, insert the
  ledger rows) run as its own transaction (autocommit) on the raw psycopg connection: a single
  round trip, with ``synchronous_commit = off`` for the batch's connection (see
  :func:`batch_connection`).
* SQLite (development): statements built once, executed with bound parameters.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Connection, bindparam, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from newsletter.db import get_engine
from newsletter.models import DeliveryStatus
from newsletter.outbox import DELIVERIES, SENT_POSTS, insert_ignore
from newsletter.settings import Settings

IDLE = 0  # psycopg.pq.TransactionStatus.IDLE: no transaction open on the connection

_PG_MARK_SENT = """
WITH delivered AS (
    UPDATE deliveries
       SET status = 'sent', sent_at = %(now)s, smtp_code = %(code)s, smtp_response = %(reply)s,
           message_id = %(message_id)s, attempts = attempts + 1, claimed_by = ''
     WHERE id = %(id)s AND status IN ('sending', 'queued')
 RETURNING subscriber_id
)
INSERT INTO sent_posts (subscriber_id, post_id, issue_id, sent_at)
SELECT delivered.subscriber_id, post_id, %(issue_id)s, %(now)s
  FROM delivered CROSS JOIN unnest(%(post_ids)s::bigint[]) AS post_id
    ON CONFLICT DO NOTHING
"""

_MARK_SENT = (
    update(DELIVERIES)
    .where(
        DELIVERIES.c.id == bindparam("delivery_id"),
        DELIVERIES.c.status.in_([DeliveryStatus.SENDING.value, DeliveryStatus.QUEUED.value]),
    )
    .values(
        status=DeliveryStatus.SENT.value,
        sent_at=bindparam("now"),
        smtp_code=bindparam("code"),
        smtp_response=bindparam("reply"),
        message_id=bindparam("mid"),
        attempts=DELIVERIES.c.attempts + 1,
        claimed_by="",
    )
)


class SentRecorder(Protocol):
    """Records one accepted mail, committed before it returns."""

    def mark_sent(
        self,
        *,
        delivery_id: int,
        subscriber_id: int,
        issue_id: int,
        now: datetime,
        code: int,
        reply: str,
        message_id: str,
        post_ids: Sequence[int],
    ) -> None:
        """Mark the delivery sent and add its posts to the reader's ledger; commit."""
        ...


class PostgresRecorder:
    """One prepared statement, autocommitted, on the raw psycopg connection: one round trip."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw

    def mark_sent(
        self,
        *,
        delivery_id: int,
        subscriber_id: int,
        issue_id: int,
        now: datetime,
        code: int,
        reply: str,
        message_id: str,
        post_ids: Sequence[int],
    ) -> None:
        """See :class:`SentRecorder`."""
        raw = self.raw
        if raw.info.transaction_status != IDLE:
            raw.commit()  # never fold earlier work into this mark
        # One statement in autocommit mode is its own transaction: one round trip, no COMMIT.
        raw.autocommit = True
        try:
            raw.execute(
                _PG_MARK_SENT,
                {
                    "id": delivery_id,
                    "now": now,
                    "code": code,
                    "reply": reply[:1000],
                    "message_id": message_id[:300],
                    "issue_id": issue_id,
                    "post_ids": list(post_ids),
                },
                prepare=True,
            )
        finally:
            raw.autocommit = False


class CoreRecorder:
    """Prebuilt SQLAlchemy Core statements through the session (SQLite, or any other)."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def mark_sent(
        self,
        *,
        delivery_id: int,
        subscriber_id: int,
        issue_id: int,
        now: datetime,
        code: int,
        reply: str,
        message_id: str,
        post_ids: Sequence[int],
    ) -> None:
        """See :class:`SentRecorder`."""
        self.session.execute(
            _MARK_SENT,
            {
                "delivery_id": delivery_id,
                "now": now,
                "code": code,
                "reply": reply[:1000],
                "mid": message_id[:300],
            },
        )
        insert_ignore(
            self.session,
            SENT_POSTS,
            [
                {
                    "subscriber_id": subscriber_id,
                    "post_id": pid,
                    "issue_id": issue_id,
                    "sent_at": now,
                }
                for pid in post_ids
            ],
        )
        self.session.commit()


@contextmanager
def batch_connection(settings: Settings) -> Iterator[tuple[Session, SentRecorder]]:
    """A session pinned to one connection, and the fastest recorder for its database.

    On PostgreSQL the connection runs with ``synchronous_commit = off``: a "sent" commit costs a
    round trip instead of waiting for the WAL to reach the disk. The commit is still atomic and
    immediately visible, and a crashed *worker* loses nothing; only a crash of the PostgreSQL
    server itself could lose the last few hundred milliseconds of marks (those readers would be
    mailed again). The setting is reset before the connection returns to the pool.
    """
    engine = get_engine(settings.database_url)
    with engine.connect() as conn:
        postgres = engine.dialect.name == "postgresql"
        if postgres:
            conn.exec_driver_sql("SET synchronous_commit TO off")
            conn.commit()
        session = Session(bind=conn, expire_on_commit=False)
        recorder: SentRecorder = (
            PostgresRecorder(_driver_connection(conn)) if postgres else CoreRecorder(session)
        )
        try:
            yield session, recorder
        finally:
            session.close()
            if postgres:
                _reset(conn)


def _driver_connection(conn: Connection) -> Any:
    """The psycopg connection under a SQLAlchemy connection."""
    return conn.connection.driver_connection


def _reset(conn: Connection) -> None:
    """Restore the default commit mode before the connection goes back to the pool."""
    try:
        conn.rollback()
        conn.exec_driver_sql("RESET synchronous_commit")
        conn.commit()
    except SQLAlchemyError:
        conn.invalidate()
