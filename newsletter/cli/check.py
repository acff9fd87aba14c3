"""``newsletter check``: can this configuration run? Settings, database, broker, mail server."""

from __future__ import annotations

import os
import smtplib
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import click
from flask.cli import AppGroup
from kombu import Connection

from newsletter.cli.db import head_revision
from newsletter.settings import DEFAULT_SECRET_KEY, Settings, redact_url
from newsletter.store.migrate import current_revision

_group = AppGroup()
TIMEOUT = 5.0


@dataclass(frozen=True)
class Finding:
    """The outcome of one check: ``ok``, ``warn`` or ``fail``, and what it means."""

    name: str
    status: str
    detail: str


def check_settings(s: Settings) -> Finding:
    """Settings loaded (they validate on load); say which environment and base URL."""
    if s.secret_key == DEFAULT_SECRET_KEY:
        return Finding(
            "settings",
            "warn",
            f"env={s.env}; the development secret key is in use "
            "(set NEWSLETTER_SECRET_KEY before going live)",
        )
    return Finding("settings", "ok", f"env={s.env}, base URL {s.base_url}")


def check_database(s: Settings) -> Finding:
    """The database answers and its schema is at the newest migration."""
    url = redact_url(s.database_url)
    missing = s.sqlite_file()
    if missing is not None and not missing.exists():
        # Connecting would create an empty file: a second database where none was meant.
        return Finding(
            "database",
            "fail",
            f"no database at {missing}; run `newsletter db upgrade` to create it, or point "
            "NEWSLETTER_DATA_DIR (or NEWSLETTER_DATABASE_URL) at the one you have",
        )
    try:
        now = current_revision(s.database_url)
    except Exception as exc:
        return Finding("database", "fail", f"{url}: {_first_line(exc)}")
    head = head_revision(s.database_url)
    if now is None:
        return Finding("database", "fail", f"{url}: no schema; run `newsletter db upgrade`")
    if now != head:
        return Finding(
            "database", "fail", f"{url}: at {now}, newest is {head}; run `newsletter db upgrade`"
        )
    return Finding("database", "ok", f"{url} at revision {now} (head)")


def check_broker(s: Settings) -> Finding:
    """The Celery broker accepts a connection (or its folder is writable when embedded)."""
    if s.broker_is_embedded:
        return _writable("broker", s.broker_dir, "embedded broker folder")
    url = redact_url(s.broker_url)
    try:
        with Connection(s.broker_url, connect_timeout=TIMEOUT) as conn:
            conn.ensure_connection(max_retries=1)
    except Exception as exc:
        return Finding("broker", "fail", f"{url}: {_first_line(exc)}")
    return Finding("broker", "ok", f"{url} accepts connections")


def check_mail(s: Settings) -> Finding:
    """The SMTP server greets, does STARTTLS/login as configured (no mail is sent)."""
    capture = s.mail_capture_dir
    if capture is not None:
        return _writable("mail", capture, "mail is captured (development) in")
    parts = urlsplit(s.smtp_url)
    url = redact_url(s.smtp_url)
    query = {k: v[-1].lower() for k, v in parse_qs(parts.query).items()}
    host = parts.hostname or "localhost"
    implicit = parts.scheme == "smtps"
    port = parts.port or (465 if implicit else 25)
    try:
        conn: smtplib.SMTP
        if implicit:
            conn = smtplib.SMTP_SSL(
                host, port, timeout=TIMEOUT, context=ssl.create_default_context()
            )
        else:
            conn = smtplib.SMTP(host, port, timeout=TIMEOUT)
        with conn:
            conn.ehlo()
            if query.get("starttls") in {"1", "true", "yes"}:
                conn.starttls(context=ssl.create_default_context())
                conn.ehlo()
            if parts.username:
                conn.login(unquote(parts.username), unquote(parts.password or ""))
            conn.noop()
    except (OSError, smtplib.SMTPException) as exc:
        return Finding("mail", "fail", f"{url}: {_first_line(exc)}")
    return Finding("mail", "ok", f"{url} answers")


def _writable(name: str, folder: Path, what: str) -> Finding:
    """The folder is writable, or could be created: checked without creating anything."""
    existing = folder
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        return Finding(name, "fail", f"{folder} cannot be written ({existing} is not writable)")
    later = "" if existing == folder else " (created on first use)"
    return Finding(name, "ok", f"{what} {folder}{later}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or exc.__class__.__name__
    return text.splitlines()[0]


CHECKS: tuple[Callable[[Settings], Finding], ...] = (
    check_settings,
    check_database,
    check_broker,
    check_mail,
)


@_group.command("check", with_appcontext=False)
def check_command() -> None:
    """Check settings, database, broker and mail server; exit 1 if anything fails."""
    # The settings alone, not the app: building it would create the data folder, and a check
    # run in the wrong folder must leave nothing behind.
    s = Settings.read_env().filled()
    findings = [check(s) for check in CHECKS]
    colours = {"ok": "green", "warn": "yellow", "fail": "red"}
    for f in findings:
        label = click.style(f"{f.status.upper():<4}", fg=colours[f.status], bold=True)
        click.echo(f"{label}  {f.name:<9} {f.detail}")
    failed = [f.name for f in findings if f.status == "fail"]
    if failed:
        click.echo(f"\n{len(failed)} check(s) failed: {', '.join(failed)}.", err=True)
        raise SystemExit(1)
    click.echo("\nAll checks passed.")


commands = [check_command]
