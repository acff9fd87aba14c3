"""The Celery broker seen from outside a worker: does it answer, and how many tasks wait per queue.

Both go through kombu, the library Celery itself speaks to the broker with, so Redis, RabbitMQ
and the embedded filesystem broker are read the same way: a passive ``queue_declare`` answers
with the number of messages waiting (Redis: the lengths of the queue's lists; RabbitMQ: the
queue's ready messages) without creating or changing anything. Every call has a short timeout
and one attempt, so a stopped broker makes a health check or a scrape answer at once, not hang.
"""

from __future__ import annotations

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
        "max_retries": 1,
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
        except UNREACHABLE:
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
        for queue in queues:
            # A channel per queue: RabbitMQ closes the channel of a failed passive declare.
            channel = conn.channel()
            try:
                declared = channel.queue_declare(queue=queue, passive=True)
                depths[queue] = int(declared.message_count)
            except (ChannelError, *conn.channel_errors):
                depths[queue] = 0
            finally:
                _close_quietly(channel)
    return depths


def _close_quietly(channel: Any) -> None:
    """Close a channel the broker may already have closed."""
    try:
        channel.close()
    except (*UNREACHABLE, ChannelError):
        pass
