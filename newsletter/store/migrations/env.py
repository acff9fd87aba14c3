"""Alembic environment: the URL comes from the caller's config, the metadata from our models."""

from __future__ import annotations

from alembic import context

from newsletter.store import models  # noqa: F401 - registers the tables on Base.metadata
from newsletter.store.db import Base, get_engine

config = context.config
target_metadata = Base.metadata


def run_migrations_offline() -> None:
    """Emit SQL to stdout instead of touching a database."""
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run migrations on a live connection; batch mode keeps ALTERs portable to SQLite."""
    url = config.get_main_option("sqlalchemy.url")
    assert url, "sqlalchemy.url must be set by newsletter.store.migrate"
    with get_engine(url).connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=True,
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
