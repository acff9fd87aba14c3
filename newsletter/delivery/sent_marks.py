"""The hot path of a send: record "sent" (and the posts in the ledger) right after SMTP said 250.

This runs once per mail between two SMTP transactions, so it is kept to one statement and one
commit, with no ORM objects and no statement building per mail:

* PostgreSQL: one prepared statement (a data-modifying CTE: mark the delivery sent, insert the
  ledger rows) executed outside any transaction block, so it commits by itself: a single round
  trip, with ``synchronous_commit = off`` for the batch's connection (see
  :func:`batch_connection`). It goes straight to libpq (``PQexecPrepared`` with text
  parameters): psycopg's ``execute`` spends ~120 µs of Python a call converting the query and
  dumping the parameters, libpq ~12 µs, which is a tenth of a worker's whole budget per mail.
* SQLite (development): statements built once, executed with bound parameters.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Protocol

import psycopg
from psycopg import errors as psycopg_errors
from psycopg import pq
from sqlalchemy import Connection, bindparam, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from newsletter.settings import Settings
from newsletter.store.db import get_engine, get_sessionmaker
from newsletter.store.models import DeliveryStatus
from newsletter.store.queries import DELIVERIES, SENT_POSTS, insert_ignore

IDLE = pq.TransactionStatus.IDLE  # no transaction open on the connection
_OK = (pq.ExecStatus.COMMAND_OK, pq.ExecStatus.TUPLES_OK)
FATAL = pq.ExecStatus.FATAL_ERROR
SQLSTATE = pq.DiagnosticField.SQLSTATE
UNDEFINED_STATEMENT = b"26000"  # invalid_sql_statement_name: no such prepared statement

_PG_MARK_SENT_NAME = b"newsletter_mark_sent"
# $1 delivery id, $2 sent at, $3 SMTP code, $4 reply, $5 Message-ID, $6 issue id, $7 post ids.
_PG_MARK_SENT = b"""
WITH delivered AS (
    UPDATE deliveries
       SET status = 'sent', sent_at = $2, smtp_code = $3, smtp_response = $4,
           message_id = $5, attempts = attempts + 1, claimed_by = ''
     WHERE id = $1 AND status IN ('sending', 'queued')
 RETURNING subscriber_id
)
INSERT INTO sent_posts (subscriber_id, post_id, issue_id, sent_at)
SELECT delivered.subscriber_id, post_id, $6, $2
  FROM delivered CROSS JOIN unnest($7::bigint[]) AS post_id
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
    """One prepared statement on the libpq connection, committing by itself: one round trip."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw  # the psycopg connection
        self.pgconn = raw.pgconn
        self.encoding = raw.info.encoding
        self._prepare()

    def _prepare(self) -> None:
        """(Re)create the statement on this connection, once per batch.

        psycopg runs DEALLOCATE ALL when it sees a ROLLBACK (as the pool's reset-on-return
        issues) while it has statements of its own prepared, so ours cannot be assumed to
        survive from one batch to the next; a protocol-level Close is harmless when it is gone.
        """
        pgconn = self.pgconn
        try:
            self._check(pgconn.close_prepared(_PG_MARK_SENT_NAME))
        except psycopg.NotSupportedError:  # libpq < 17 has no Close: DEALLOCATE if it exists
            found = pgconn.exec_(
                b"SELECT 1 FROM pg_catalog.pg_prepared_statements WHERE name = '%s'"
                % _PG_MARK_SENT_NAME
            )
            self._check(found)
            if found.ntuples:
                self._check(pgconn.exec_(b"DEALLOCATE " + _PG_MARK_SENT_NAME))
        self._check(pgconn.prepare(_PG_MARK_SENT_NAME, _PG_MARK_SENT))

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
        pgconn = self.pgconn
        if pgconn.transaction_status != IDLE:
            self.raw.commit()  # never fold earlier work into this mark
        params = [
            b"%d" % delivery_id,
            now.isoformat().encode(),
            b"%d" % code,
            reply[:1000].replace("\x00", "").encode(),  # libpq text ends at a NUL
            message_id[:300].encode(),
            b"%d" % issue_id,
            ("{" + ",".join(map(str, map(int, post_ids))) + "}").encode(),
        ]
        # Outside a transaction block the statement is its own transaction: no BEGIN/COMMIT.
        result = pgconn.exec_prepared(_PG_MARK_SENT_NAME, params)
        if result.status == FATAL and result.error_field(SQLSTATE) == UNDEFINED_STATEMENT:
            # Deallocated under us (see _prepare); nothing was written: make it again, once.
            self._prepare()
            result = pgconn.exec_prepared(_PG_MARK_SENT_NAME, params)
        self._check(result)

    def _check(self, result: Any) -> None:
        """Raise psycopg's exception for a failed statement (as ``execute`` would); a broken
        connection is an OperationalError, so the task retries it (libpq's result alone would
        make it a bare DatabaseError, with no SQLSTATE to tell)."""
        if result.status in _OK:
            return
        if self.pgconn.status != pq.ConnStatus.OK:
            message = self.pgconn.error_message.decode(self.encoding, "replace").strip()
            raise psycopg.OperationalError(f"the database connection was lost: {message}")
        raise psycopg_errors.error_from_result(result, encoding=self.encoding)


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
        # From the app's session factory, so what its commits emit (issue.sent) is enqueued.
        session = get_sessionmaker(settings.database_url)(bind=conn)
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
