"""Thin Celery tasks: they carry ids, call into newsletter/, and are safe to run twice.

Tasks are declared with ``shared_task`` so this module never imports an app object.
"""

from __future__ import annotations

import logging

from celery import shared_task
from flask import current_app

from newsletter.db import session_scope
from newsletter.settings import Settings

log = logging.getLogger(__name__)


def settings() -> Settings:
    """Settings of the Flask app the task runs in."""
    value: Settings = current_app.extensions["newsletter.settings"]
    return value


@shared_task(name="newsletter.ingest_feeds")
def ingest_feeds() -> dict[str, int]:
    """Ingest every due feed; one failing feed is recorded on its row and never stops the rest."""
    from newsletter.feeds import ingest_due_feeds

    with session_scope(settings().database_url) as session:
        results = ingest_due_feeds(session, settings())
    summary = {
        "feeds": len(results),
        "failed": sum(1 for r in results if not r.ok),
        "created": sum(r.created for r in results),
        "updated": sum(r.updated for r in results),
    }
    if results:
        log.info("feeds ingested: %s", summary)
    return summary
