"""Reaching the real Redis and PostgreSQL this machine runs (skip with a reason if unreachable)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
POSTGRES_ADMIN_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def reachable(host: str, port: int) -> bool:
    """True when something accepts TCP connections there."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def redis_up() -> bool:
    """Is the test Redis reachable?"""
    return reachable("127.0.0.1", 6379)


def postgres_up() -> bool:
    """Is the test PostgreSQL reachable?"""
    return reachable("127.0.0.1", 5432)


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """Create a throwaway PostgreSQL database and yield its SQLAlchemy URL."""
    import sqlalchemy as sa

    name = f"nl_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        from newsletter.store.db import dispose_engines

        dispose_engines()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def migrated_postgres_database() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database; skips (a CI failure) when PostgreSQL is down."""
    from newsletter.store.migrate import upgrade

    if not postgres_up():
        pytest.skip("PostgreSQL is unreachable at 127.0.0.1:5432")
    with fresh_postgres_database() as url:
        upgrade(url)
        yield url


@contextmanager
def rabbitmq_vhost() -> Iterator[str]:
    """A throwaway virtual host on the machine's RabbitMQ (5672); yields its broker URL.

    Each test gets its own vhost, so its queues (transactional, bulk, housekeeping) are its own.
    Skips with the reason when RabbitMQ or rabbitmqctl is not there.
    """
    if not reachable("127.0.0.1", 5672) or not shutil.which("rabbitmqctl"):
        pytest.skip("RabbitMQ is not running on 127.0.0.1:5672 (or rabbitmqctl is missing)")
    name = f"newsletter-test-{uuid.uuid4().hex[:8]}"

    def ctl(*args: str) -> None:
        subprocess.run(["rabbitmqctl", *args], capture_output=True, check=True, timeout=60)

    ctl("add_vhost", name)
    try:
        ctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        yield f"amqp://guest:guest@127.0.0.1:5672/{name}"
    finally:
        ctl("delete_vhost", name)
