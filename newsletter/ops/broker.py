"""The Celery broker seen from outside a worker: does it answer, and how many tasks wait per queue.

Both go through kombu, the library Celery itself speaks to the broker with, so Redis, RabbitMQ
and the embedded filesystem broker are read the same way: a passive ``queue_declare`` answers
with the number of messages waiting (Redis: the lengths of the queue's lists; RabbitMQ: the
queue's ready messages) without creating or changing anything. Every call has a short timeout
and one attempt, so a stopped broker makes a health check or a scrape answer at once, not hang.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from typing import Any

from kombu import Connection
from kombu.exceptions import ChannelError, OperationalError

TIMEOUT_SECONDS = 1.5
# What a broker that is down, refusing, or unknown at that address raises through kombu.
UNREACHABLE = (OSError, OperationalError, ConnectionError, TimeoutError)


def connect(
    url: str, transport_options: Mapping[str, Any], timeout: float = TIMEOUT_SECONDS
) -> Connection:
    """An open connection to the broker at ``url``; raises one of ``UNREACHABLE`` if it is not."""
    options = {
        **transport_options,
        # Redis reads these; RabbitMQ uses connect_timeout below.
        "socket_connect_timeout": timeout,
        "socket_timeout": timeout,
        # And these bound the retries of opening the default channel: one try, no waiting.
        "max_retries": 1,
        "interval_start": 0,
        "interval_step": 0,
    }
    conn = Connection(url, connect_timeout=timeout, transport_options=options)
    try:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout)
    except BaseException:
        conn.release()
        raise
    return conn


def reachable(url: str, transport_options: Mapping[str, Any]) -> bool:
    """True when the broker accepts a connection within the timeout."""
    try:
        conn = connect(url, transport_options)
    except UNREACHABLE:
        return False
    with conn:
        try:
            # Redis connects lazily: a channel makes it answer (a PING) for real.
            conn.default_channel  # noqa: B018
        except (*UNREACHABLE, *conn.connection_errors):
            return False
    return True


def queue_depths(
    url: str, transport_options: Mapping[str, Any], queues: Iterable[str]
) -> dict[str, int]:
    """Messages waiting in each queue; raises one of ``UNREACHABLE`` when the broker is not up.

    A queue the broker does not know yet (nothing was ever sent to it, or Redis dropped the
    emptied list) holds nothing: 0.
    """
    depths: dict[str, int] = {}
    with connect(url, transport_options) as conn:
        try:
            for queue in queues:
                depths[queue] = _depth(conn, queue)
        except conn.connection_errors as exc:
            # Gone after connecting: the transport's own error (redis-py's, amqp's) as kombu's.
            raise OperationalError(type(exc).__name__) from exc
    return depths


def _depth(conn: Connection, queue: str) -> int:
    """One queue's waiting messages, through a passive declare on a channel of its own (RabbitMQ
    closes the channel of a failed one)."""
    channel = conn.channel()
    try:
        return int(channel.queue_declare(queue=queue, passive=True).message_count)
    except (ChannelError, *conn.channel_errors):
        return 0
    finally:
        _close_quietly(conn, channel)


def _close_quietly(conn: Connection, channel: Any) -> None:
    """Close a channel the broker may already have closed."""
    errors = (*UNREACHABLE, ChannelError, *conn.connection_errors, *conn.channel_errors)
    with contextlib.suppress(*errors):
        channel.close()
