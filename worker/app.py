"""The Celery app, built from the same settings as the Flask app (Flask's celery example).

The app factory (:mod:`newsletter.app`) calls :func:`celery_init_app`; the worker and beat get
their Celery app through :func:`newsletter.app.create_celery`, so both share one composition.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from celery import Celery, Task
from flask import Flask

# Imported for its side effect: the shared_task declarations bind to every Celery app created here.
import worker.tasks  # noqa: F401
from newsletter.settings import Settings
from worker.observe import connect_signals

TASK_SOFT_TIME_LIMIT = 300
TASK_TIME_LIMIT = 360

# Three queues, so that a reader's confirmation never waits behind a digest to 100,000 readers:
# transactional mail (the reader's own requests), bulk sending, and housekeeping. A worker serves
# all three unless told otherwise (`newsletter worker --queues ...`); a deployment runs at least
# one process on `transactional` alone, so bulk batches can never hold every process it has.
TRANSACTIONAL = "transactional"
BULK = "bulk"
HOUSEKEEPING = "housekeeping"
QUEUES = (TRANSACTIONAL, BULK, HOUSEKEEPING)
ROUTES = {
    TRANSACTIONAL: (
        "newsletter.process_signup",
        "newsletter.send_confirmation",
        "newsletter.send_already_subscribed",
        "newsletter.send_welcome",
        "newsletter.send_manage_link",
        "newsletter.send_data_link",
    ),
    BULK: ("newsletter.fan_out", "newsletter.send_batch"),
    HOUSEKEEPING: (
        "newsletter.tick",
        "newsletter.purge_pending",
        "newsletter.ingest_feeds",
        "newsletter.ingest_feed",
        "newsletter.deliver_webhook",
    ),
}


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery configuration derived from our settings."""
    config: dict[str, Any] = {
        "broker_url": settings.broker_url,
        "task_ignore_result": True,
        "result_backend": None,
        "task_serializer": "json",
        "accept_content": ["json"],
        # A task is acknowledged after it ran, so a killed worker's batch is redelivered;
        # every task is idempotent through database constraints, so a rerun is harmless.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        # Every task has both limits (a task may set its own): at the soft one it gets
        # SoftTimeLimitExceeded to clean up with, at the hard one its process is killed, so
        # a hung task cannot hold a worker for ever.
        "task_soft_time_limit": TASK_SOFT_TIME_LIMIT,
        "task_time_limit": TASK_TIME_LIMIT,
        "broker_connection_retry_on_startup": True,
        "task_default_queue": HOUSEKEEPING,
        "task_routes": {
            name: {"queue": queue} for queue, names in ROUTES.items() for name in names
        },
        "timezone": "UTC",
        "enable_utc": True,
        "beat_schedule": {
            "tick": {
                "task": "newsletter.tick",
                "schedule": timedelta(seconds=settings.beat_tick_seconds),
            },
            "purge-pending": {"task": "newsletter.purge_pending", "schedule": timedelta(hours=1)},
            "ingest-feeds": {
                "task": "newsletter.ingest_feeds",
                "schedule": timedelta(minutes=settings.feed_interval_minutes),
            },
        },
    }
    if settings.broker_is_embedded:
        folder = str(settings.broker_dir)
        settings.broker_dir.mkdir(parents=True, exist_ok=True)
        config["broker_transport_options"] = {
            "data_folder_in": folder,
            "data_folder_out": folder,
            "store_processed": False,
            # kombu's default is ./control, relative to wherever the process was started.
            "control_folder": str(settings.broker_dir / "control"),
        }
        config["beat_schedule_filename"] = str(settings.data_dir / "celerybeat-schedule")
    elif settings.broker_url.startswith("redis"):
        # Redelivery of unacked (late-ack) messages after a worker dies.
        config["broker_transport_options"] = {"visibility_timeout": 600}
    return config


def celery_init_app(app: Flask, settings: Settings) -> Celery:
    """Create the Celery app, run tasks inside the Flask app context, make it the default."""

    class FlaskTask(Task):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            with app.app_context():
                return self.run(*args, **kwargs)

    celery_app = Celery(app.name, task_cls=FlaskTask)
    celery_app.config_from_object(celery_config(settings))
    # Request ids into the messages, task ids into the log lines, task durations; JSON logs.
    connect_signals(settings.log_format)
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    return celery_app
