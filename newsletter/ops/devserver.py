"""`newsletter dev`: prepare a development database, then run web, the workers and beat together.

The three parts run as child processes, each in its own session so a Ctrl-C reaches only this
supervisor, which then stops them in order (graceful first, SIGKILL after a grace period). If a
child dies, the supervisor says which and stops the rest: a half-running system is confusing.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from types import FrameType
from typing import IO

from newsletter.content.feeds import ingest_source
from newsletter.ops.demo import DEMO_FEED, seed_newsletters
from newsletter.settings import Settings, redact_url
from newsletter.store.db import session_scope, utcnow
from newsletter.store.migrate import current_revision, upgrade

GRACE_SECONDS = 15.0
PUB_DATE = re.compile(r"<pubDate>([^<]+)</pubDate>")
# The sample feed's images, served by the app from templates/static/demo/.
DEMO_IMAGE = re.compile(r'(url=")(/static/demo/[^"]+")')
Echo = Callable[[str], None]


def prepare(settings: Settings, echo: Echo, base_url: str = "") -> None:
    """Migrate the database, add the demo newsletters and ingest the demo feed (idempotent);
    ``base_url`` is where the dev server will be (default: NEWSLETTER_BASE_URL)."""
    upgrade(settings.database_url)
    echo(
        f"Database {redact_url(settings.database_url)} at revision "
        f"{current_revision(settings.database_url)}."
    )
    with session_scope(settings.database_url) as db:
        created = seed_newsletters(db)
    if created:
        echo(f"Created demo newsletters: {', '.join(created)}.")
    echo(ingest_demo_feed(settings, base_url or settings.base_url))


def ingest_demo_feed(settings: Settings, base_url: str = "") -> str:
    """Register a fresh copy of the sample feed and ingest it (beat keeps polling it); its
    images point at the dev server at ``base_url`` (default: NEWSLETTER_BASE_URL)."""

    feed = settings.data_dir / "demo-feed.xml"
    rss = recent_dates(DEMO_FEED.read_text(encoding="utf-8"), utcnow())
    feed.write_text(demo_images(rss, base_url or settings.base_url), "utf-8")
    with session_scope(settings.database_url) as db:
        result = ingest_source(db, settings, str(feed))
    return f"Demo feed: {result.describe()}"


def recent_dates(rss: str, now: datetime) -> str:
    """Move every <pubDate> by the same amount so the newest is an hour old.

    The sample feed is from July 2024; digests only pick recent posts, so a demo with the
    original dates would always say "nothing new".
    """
    dates = [parsedate_to_datetime(d) for d in PUB_DATE.findall(rss)]
    if not dates:
        return rss
    shift = (now - timedelta(hours=1)) - max(dates)
    return PUB_DATE.sub(
        lambda m: (
            f"<pubDate>{format_datetime(parsedate_to_datetime(m.group(1)) + shift)}</pubDate>"
        ),
        rss,
    )


def demo_images(rss: str, base_url: str) -> str:
    """Make the sample feed's image paths absolute on ``base_url``: a mail client, like the
    feed reader, needs a full address, and ours is only known when the server starts."""
    return DEMO_IMAGE.sub(lambda m: m.group(1) + base_url.rstrip("/") + m.group(2), rss)


def port_free(host: str, port: int) -> bool:
    """True when nothing listens on host:port yet."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def listening(host: str, port: int) -> bool:
    """True when something accepts connections on host:port."""
    target = "127.0.0.1" if host in {"0.0.0.0", ""} else ("::1" if host == "::" else host)  # noqa: S104
    try:
        with socket.create_connection((target, port), timeout=0.5):
            return True
    except OSError:
        return False


def link_host(host: str) -> str:
    """The host to put in links: a wildcard address is reachable as loopback."""
    if host in {"0.0.0.0", "", "::"}:  # noqa: S104 - only naming the wildcard address
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def server_url(host: str, port: int) -> str:
    """The address of the dev server in links: NEWSLETTER_BASE_URL when set, else host:port."""
    return os.environ.get("NEWSLETTER_BASE_URL") or f"http://{link_host(host)}:{port}"


def child_env(settings: Settings, host: str, port: int) -> dict[str, str]:
    """Environment for the children: same settings, absolute data dir, links to this server."""
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["NEWSLETTER_DATA_DIR"] = str(settings.data_dir)
    # Mailed links must reach this very server when the port or host was changed.
    env["NEWSLETTER_BASE_URL"] = server_url(host, port)
    return env


def child_commands(host: str, port: int, concurrency: int) -> dict[str, list[str]]:
    """The command line of each part: Flask's development server, the workers, beat."""
    base = [sys.executable, "-m", "newsletter.cli"]
    return {
        "web": [
            *base,
            "run",
            "--host",
            host,
            "--port",
            str(port),
            "--no-reload",
            "--no-debugger",
            "--with-threads",
        ],
        "worker": [
            *base,
            "worker",
            "--queues",
            "bulk,housekeeping",
            "--concurrency",
            str(concurrency),
            "--loglevel",
            "info",
        ],
        # The fast lane, as in production: a confirmation never waits behind a send.
        "mailer": [
            *base,
            "worker",
            "--queues",
            "transactional",
            "--concurrency",
            "1",
            "--loglevel",
            "info",
        ],
        "beat": [*base, "beat", "--loglevel", "info"],
    }


@dataclass
class Child:
    """One supervised process and the thread copying its output."""

    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes] | None = None
    pump: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """True while the process has not exited."""
        return self.proc is not None and self.proc.poll() is None


@dataclass
class Supervisor:
    """Starts children, prefixes their output with their name, stops them all together."""

    commands: Mapping[str, list[str]]
    env: Mapping[str, str]
    out: IO[str] = field(default_factory=lambda: sys.stdout)
    children: list[Child] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def say(self, line: str) -> None:
        """Print a line of our own, not interleaved with a child's line."""
        with self._lock:
            self.out.write(line + "\n")
            self.out.flush()

    def start(self) -> None:
        """Start every child in its own session (so terminal signals reach only us)."""
        width = max(len(name) for name in self.commands)
        for name, argv in self.commands.items():
            proc = subprocess.Popen(
                argv,
                env=dict(self.env),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            child = Child(name, argv, proc)
            child.pump = threading.Thread(
                target=self._pump, args=(child, name.ljust(width)), daemon=True
            )
            child.pump.start()
            self.children.append(child)

    def _pump(self, child: Child, label: str) -> None:
        assert child.proc is not None and child.proc.stdout is not None
        for raw in iter(child.proc.stdout.readline, b""):
            self.say(f"{label} | {raw.decode(errors='replace').rstrip()}")

    def first_exited(self) -> Child | None:
        """A child that has stopped, if any."""
        return next((c for c in self.children if not c.running), None)

    def stop(self, grace: float = GRACE_SECONDS) -> None:
        """SIGTERM every child (a warm shutdown), then SIGKILL whole groups after ``grace``."""
        for child in self.children:
            if child.running and child.proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for child in self.children:
            if child.proc is None:
                continue
            try:
                child.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.say(f"{child.name} did not stop within {grace:.0f}s; killing it")
            # Pool processes of a worker share its process group: leave none behind.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.proc.pid, signal.SIGKILL)
            child.proc.wait()
        for child in self.children:
            if child.pump is not None:
                child.pump.join(timeout=2)


def how_it_ended(returncode: int) -> str:
    """'exited with status 1' or 'was killed by SIGKILL'."""
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with status {returncode}"


def banner(settings: Settings, host: str, port: int) -> list[str]:
    """The lines that tell a newcomer where to look."""
    site = f"http://{link_host(host)}:{port}"
    broker = (
        f"embedded (files in {settings.broker_dir})"
        if settings.broker_is_embedded
        else redact_url(settings.broker_url)
    )
    capture = settings.mail_capture_dir
    mail = f"captured in {capture}" if capture else f"sent via {redact_url(settings.smtp_url)}"
    return [
        "",
        "newsletter is running (Ctrl-C to stop):",
        f"  site             {site}/",
        f"  dev mail viewer  {site}/dev/mail/",
        f"  database         {redact_url(settings.database_url)}",
        f"  broker           {broker}",
        f"  mail             {mail}",
        "",
    ]


def run(settings: Settings, host: str, port: int, concurrency: int = 2) -> int:
    """Run web, the workers and beat until Ctrl-C or SIGTERM, or until one of them dies."""
    # A plain list, not a threading.Event: Event.set() in a signal handler can deadlock on the
    # lock the interrupted main thread already holds inside Event.wait().
    received: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    supervisor = Supervisor(
        child_commands(host, port, concurrency), child_env(settings, host, port)
    )
    status = 0
    try:
        supervisor.start()
        announced = False
        while not received:
            dead = supervisor.first_exited()
            if dead is not None and dead.proc is not None:
                supervisor.say(
                    f"{dead.name} {how_it_ended(dead.proc.returncode)}; stopping the others."
                )
                status = 1
                break
            if not announced and listening(host, port):
                for line in banner(settings, host, port):
                    supervisor.say(line)
                announced = True
            time.sleep(0.2)
        if received:
            supervisor.say("Stopping web, workers and beat…")
    finally:
        supervisor.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return status
