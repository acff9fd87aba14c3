"""``newsletter web``, ``newsletter worker`` and ``newsletter beat``: the three long-running parts.

Each validates the settings first, so a bad setting is one clear line rather than a traceback in
every gunicorn or pool process.
"""

from __future__ import annotations

import os
import sys
from typing import Any
from wsgiref.simple_server import WSGIServer

import click
from celery.signals import worker_process_init
from flask.cli import AppGroup
from prometheus_client import start_http_server
from prometheus_client.registry import CollectorRegistry

from newsletter.app import create_celery
from newsletter.ops.instruments import (
    MULTIPROC_ENV,
    TASK_DURATION,
    clear_multiprocess_dir,
    exposed,
    multiprocess_dir,
)
from newsletter.settings import Settings
from newsletter.store.db import forget_pools_after_fork
from worker.app import QUEUES

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

# AppGroup.command(with_appcontext=False): these commands build what they need themselves.
_group = AppGroup()


def gunicorn_argv(host: str, port: int, workers: int, threads: int) -> list[str]:
    """The gunicorn command line that serves ``newsletter.wsgi:app``."""
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "newsletter.wsgi:app",
        "--bind",
        bind,
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        # No --access-logfile: gunicorn's line has the full path, and mailed links carry tokens
        # in theirs. newsletter/web/access_log.py logs the route pattern instead.
        "--error-logfile",
        "-",
        # gunicorn also reads GUNICORN_CMD_ARGS, e.g. "--forwarded-allow-ips=*" behind a proxy.
    ]


@_group.command("web", with_appcontext=False)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--workers", default=2, show_default=True, type=click.IntRange(1), help="gunicorn processes."
)
@click.option(
    "--threads", default=4, show_default=True, type=click.IntRange(1), help="Threads a process."
)
def web_command(host: str, port: int, workers: int, threads: int) -> None:
    """Serve the site with gunicorn (production web server)."""
    settings = Settings.from_env()
    click.echo(f"Serving {settings.base_url} from http://{host}:{port} ({workers} workers)")
    sys.stdout.flush()
    argv = gunicorn_argv(host, port, workers, threads)
    # Multiprocess metrics: the samples of a previous run would be added to this one's.
    clear_multiprocess_dir()
    # exec: gunicorn takes over this process, so signals from a supervisor reach it directly.
    os.execv(argv[0], argv)  # noqa: S606 - fixed argv, no shell


def celery_app(settings: Settings) -> Any:
    """The Celery app for these settings, with fork-safe database pools in pool processes."""
    worker_process_init.connect(_fresh_pools_after_fork, weak=False)
    return create_celery(settings)


def _fresh_pools_after_fork(**_: Any) -> None:
    """A forked pool process must not share its parent's database connections."""
    forget_pools_after_fork()


def _queue_names(_ctx: click.Context, _param: click.Parameter, value: str) -> tuple[str, ...]:
    """``--queues`` as known queue names, in order, without repeats; a usage error otherwise."""
    names = tuple(dict.fromkeys(q.strip() for q in value.split(",") if q.strip()))
    unknown = [q for q in names if q not in QUEUES]
    if unknown or not names:
        raise click.BadParameter(
            f"{', '.join(unknown) or 'nothing'}: choose from {', '.join(QUEUES)}"
        )
    return names


@_group.command(
    "worker",
    with_appcontext=False,
    context_settings={"ignore_unknown_options": True, "allow_extra_args": False},
)
@click.option(
    "--concurrency",
    "-c",
    type=click.IntRange(1),
    default=None,
    help="Pool processes or threads [default: number of CPUs].",
)
@click.option(
    "--pool",
    "-P",
    type=click.Choice(["prefork", "threads", "solo"]),
    default="prefork",
    show_default=True,
)
@click.option(
    "--loglevel",
    "-l",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default="info",
    show_default=True,
)
@click.option(
    "--queues",
    "-Q",
    default=",".join(QUEUES),
    show_default=True,
    callback=_queue_names,
    help=(
        "Queues to serve, comma-separated: transactional (the reader's mails), bulk (sends), "
        "housekeeping (feeds, purges, beat's tick). Run at least one worker on transactional "
        "alone so a big send never delays a confirmation."
    ),
)
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker_command(
    concurrency: int | None,
    pool: str,
    loglevel: str,
    queues: tuple[str, ...],
    celery_args: tuple[str, ...],
) -> None:
    """Run a Celery worker (sends mail, builds digests). Extra arguments go to celery."""
    settings = Settings.from_env()
    node = "newsletter" if set(queues) == set(QUEUES) else "newsletter-" + "-".join(queues)
    argv = [
        "worker",
        f"--loglevel={loglevel.upper()}",
        f"--pool={pool}",
        f"--queues={','.join(queues)}",
        f"--hostname={node}@%h",
    ]
    if pool == "prefork":
        # fair: hand a task to a process only when it is free, so a slow batch blocks no other.
        argv.append("-Ofair")
    if concurrency:
        argv.append(f"--concurrency={concurrency}")
    argv.extend(celery_args)
    app = celery_app(settings)
    serve_task_metrics(settings, pool)
    app.worker_main(argv)


def serve_task_metrics(settings: Settings, pool: str) -> WSGIServer | None:
    """Serve ``newsletter_task_duration_seconds`` on NEWSLETTER_WORKER_METRICS_PORT, if set.

    The tasks run in this process's pool: threads share its histogram, but prefork children
    each have their own, which only multiprocess mode brings back together; without it the port
    would show nothing, so that is refused rather than served empty.
    """
    port = settings.worker_metrics_port
    if not port:
        return None
    if pool == "prefork" and multiprocess_dir() is None:
        raise click.UsageError(
            f"NEWSLETTER_WORKER_METRICS_PORT with the prefork pool needs {MULTIPROC_ENV} set to "
            "an empty folder of this worker's own (its pool processes write their task "
            "durations there); or use --pool threads"
        )
    clear_multiprocess_dir()
    registry = CollectorRegistry(auto_describe=False)
    exposed(registry, TASK_DURATION)
    try:
        server, _thread = start_http_server(
            port, addr=settings.worker_metrics_host, registry=registry
        )
    except OSError as exc:
        raise click.ClickException(
            f"cannot serve worker metrics on {settings.worker_metrics_host}:{port}: "
            f"{exc.strerror or exc}"
        ) from exc
    click.echo(f"Task metrics on http://{settings.worker_metrics_host}:{port}/metrics")
    return server


@_group.command("beat", with_appcontext=False)
@click.option(
    "--loglevel",
    "-l",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default="info",
    show_default=True,
)
def beat_command(loglevel: str) -> None:
    """Run Celery beat: the clock that fires schedules and feed polls. Run exactly one."""
    settings = Settings.from_env()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    schedule = settings.data_dir / "celerybeat-schedule"
    celery_app(settings).start(["beat", f"--loglevel={loglevel.upper()}", f"--schedule={schedule}"])


@_group.command("ping", with_appcontext=False)
@click.option(
    "--node",
    "nodes",
    multiple=True,
    help="Only this worker (e.g. newsletter@HOSTNAME); repeatable.",
)
@click.option("--timeout", default=5.0, show_default=True, type=click.FloatRange(0.1, 60))
def ping_command(nodes: tuple[str, ...], timeout: float) -> None:
    """Ask running workers to answer over the broker; exit 1 when none does (health checks)."""
    settings = Settings.from_env()
    # With named nodes, stop waiting as soon as each has answered.
    replies = celery_app(settings).control.ping(
        destination=list(nodes) or None, timeout=timeout, limit=len(nodes) or None
    )
    answered = sorted(name for reply in replies for name in reply)
    if not answered:
        wanted = ", ".join(nodes) if nodes else "any worker"
        raise click.ClickException(f"no answer from {wanted} within {timeout:g}s")
    for name in answered:
        click.echo(f"{name}: pong")


commands = [web_command, worker_command, beat_command, ping_command]
