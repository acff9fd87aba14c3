"""Web adapters: blueprints that parse input, call the domain core and shape the output.

The accessors below are how every adapter (views here, CLI commands in ``newsletter.cli``) reads
what the app factory wired: settings, the request's session, the task and mail queues.
"""

from __future__ import annotations

from flask import current_app, g
from sqlalchemy.orm import Session

from newsletter.issues.queue import TaskQueue
from newsletter.readers.mail_queue import MailQueue
from newsletter.settings import Settings


def db() -> Session:
    """The request's database session."""
    session: Session = g.db
    return session


def settings() -> Settings:
    """The app's settings object."""
    value: Settings = current_app.extensions["newsletter.settings"]
    return value


def task_queue() -> TaskQueue:
    """Where the issue lifecycle enqueues fan-outs and batches (provided by the app factory)."""
    value: TaskQueue = current_app.extensions["newsletter.task_queue"]
    return value


def mail_queue() -> MailQueue:
    """Where the reader's path enqueues its mails (provided by the app factory)."""
    value: MailQueue = current_app.extensions["newsletter.mail_queue"]
    return value
