"""End-to-end dispatch benchmark: N confirmed readers, one digest, real Redis and worker processes.

For every (readers, database, dkim) combination it:

1. creates a fresh database (a SQLite file, or a throwaway PostgreSQL database) and migrates it;
2. seeds N active subscribers on the daily digest with mixed topics (SQLAlchemy Core, in chunks)
   and 12 posts across five categories (through the models);
3. starts ``newsletter worker`` (prefork, ``--workers`` processes) on Redis as the broker, sending
   to the benchmark sink (bench/sink.py) running in its own process;
4. runs ``newsletter digest send --newsletter daily`` and polls until the issue is finished;
5. takes the rate from the issue's start to the last delivery marked sent (database clocks), the
   peak RSS (VmHWM) of every worker process, then stops the workers;
6. counts the SMTP connections the workers held open at once during the send (the sink's peak),
   measures the bare-smtplib floor over that many connections and over one (each the median of
   three short loops) against the same sink with messages of the average size the sink received
   in this run, and prints the table.

    python bench/dispatch.py                      # 10,000 and 100,000 readers, both databases
    python bench/dispatch.py --readers 10000 --db sqlite --dkim both --workers 2

Needs Redis on 127.0.0.1:6379 and, for --db postgres, PostgreSQL on 127.0.0.1:5432 (user postgres).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import median
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from bench.floor import floor_detail  # noqa: E402

POSTGRES_ADMIN_URL = os.environ.get(
    "BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
CATEGORIES = ("world", "business", "technology", "sport", "culture")
SECRET = "bench-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"
NEWSLETTER_BIN = str(Path(sys.executable).parent / "newsletter")


@dataclass
class Result:
    """One row of the table."""

    readers: int
    db: str
    dkim: bool
    sent: int
    seconds: float
    seed_seconds: float
    rate: float
    connections: int  # SMTP connections the workers held open at once (the sink's peak)
    floor_1: float  # the floor over one connection
    floor_k: float  # the floor over ``connections`` connections: the like-for-like one
    avg_size: int
    worker_peak_mb: float
    worker_peaks: list[float]
    worker_cpu_ms: float  # worker processes' CPU time per mail sent
    sink_cpu_ms: float  # the sink's CPU time per mail received, during the send
    floor_cpu_ms: float  # smtplib client CPU per mail in the K-connection floor (all processes)
    floor_sink_cpu_ms: float  # the sink's CPU per mail during the K-connection floor loops
    db_cpu_ms: float = 0.0  # PostgreSQL's CPU per mail during the send (0 for SQLite)

    @property
    def ratio(self) -> float:
        """Our rate as a fraction of the floor over as many connections (the headline)."""
        return self.rate / self.floor_k if self.floor_k else 0.0

    @property
    def ratio_1(self) -> float:
        """Our rate as a fraction of the one-connection floor (the old, unfair figure)."""
        return self.rate / self.floor_1 if self.floor_1 else 0.0


# --- the sink -------------------------------------------------------------------------------------


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def sink_process(workdir: Path) -> Iterator[tuple[int, Path, int]]:
    """bench/sink.py in its own process; yields (port, status file, pid)."""
    port = free_port()
    status = workdir / "sink.json"
    proc = subprocess.Popen(
        [
            *(sys.executable, str(ROOT / "bench" / "sink.py"), "--port", str(port)),
            *("--status-file", str(status), "--save-dir", str(workdir / "sunk")),
            *("--save-count", "3"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    proc.stdout.readline()  # "sink listening on ..."
    try:
        yield port, status, proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=10)


class SinkCounts(NamedTuple):
    """What the sink's status file says."""

    messages: int
    bytes: int
    sessions_peak: int  # most SMTP sessions open at once since the sink started or SIGUSR1


def sink_counts(status: Path) -> SinkCounts:
    """The sink's counts so far (waits for its status file to settle)."""
    last: SinkCounts | None = None
    for _ in range(20):
        try:
            data = json.loads(status.read_text())
            now = SinkCounts(int(data["messages"]), int(data["bytes"]), int(data["sessions_peak"]))
        except (OSError, ValueError, KeyError):
            now = SinkCounts(0, 0, 0)
        if now == last:
            return now
        last = now
        time.sleep(0.25)
    return last or SinkCounts(0, 0, 0)


def reset_sink_peak(pid: int, status: Path) -> None:
    """Restart the sink's peak of open sessions (SIGUSR1); wait until its status file shows it."""
    before = sink_counts(status)
    os.kill(pid, signal.SIGUSR1)
    # Nothing is connected between runs, so the peak drops to 0; a file still showing the old
    # peak would be read as the send's.
    deadline = time.monotonic() + 5
    while (
        before.sessions_peak and sink_counts(status).sessions_peak and time.monotonic() < deadline
    ):
        time.sleep(0.1)


# --- databases and seeding ------------------------------------------------------------------------


@contextmanager
def database(kind: str, workdir: Path) -> Iterator[str]:
    """A fresh, migrated database URL of ``kind`` (sqlite or postgres), dropped afterwards."""
    from newsletter.store.db import dispose_engines
    from newsletter.store.migrate import upgrade

    if kind == "sqlite":
        path = workdir / f"bench-{uuid.uuid4().hex[:6]}.db"
        url = f"sqlite:///{path}"
        upgrade(url)
        try:
            yield url
        finally:
            dispose_engines()
            for suffix in ("", "-wal", "-shm"):
                Path(str(path) + suffix).unlink(missing_ok=True)
        return
    name = f"nl_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    try:
        upgrade(url)
        yield url
    finally:
        dispose_engines()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def seed(url: str, readers: int, chunk: int = 5000) -> float:
    """Seed the newsletter, 12 posts and ``readers`` confirmed readers; return seconds taken."""
    from sqlalchemy.orm import Session

    from newsletter.store.db import get_engine
    from newsletter.store.models import Frequency, Newsletter, NewsletterKind, Post, Subscriber
    from newsletter.store.models import Subscription as Sub

    started = time.perf_counter()
    rng = random.Random(42)
    engine = get_engine(url)
    now = datetime.now(UTC)
    with Session(engine) as session:
        newsletter = Newsletter(
            slug="daily",
            name="Daily digest",
            description="The day's news",
            kind=NewsletterKind.DIGEST,
            default_frequency=Frequency.DAILY,
            categories=[],
        )
        session.add(newsletter)
        for i in range(12):
            category = CATEGORIES[i % len(CATEGORIES)]
            session.add(
                Post(
                    guid=f"bench-post-{i}",
                    link=f"https://news.example.com/{category}/story-{i}",
                    title=f"Story {i}: what happened in {category} today",
                    summary=("A short summary of the story, two sentences long. " * 3).strip(),
                    content_html="<p>" + "Body text of the article. " * 40 + "</p>",
                    author="Newsroom",
                    categories=[category],
                    published_at=now - timedelta(minutes=20 * (i + 1)),
                )
            )
        session.commit()
        newsletter_id = newsletter.id

    subscribers = Subscriber.__table__
    subscriptions = Sub.__table__
    zones = ("UTC", "Europe/Paris", "America/New_York", "Asia/Tokyo")
    with engine.begin() as conn:
        for start in range(0, readers, chunk):
            rows = []
            for n in range(start, min(readers, start + chunk)):
                k = rng.randrange(4)
                topics = [] if k == 0 else sorted(rng.sample(CATEGORIES, k))
                email = f"reader{n}@example.org"
                rows.append(
                    {
                        "email": email,
                        "email_key": email,
                        "name": f"Reader {n}" if n % 3 else "",
                        "status": "active",
                        "timezone": zones[n % len(zones)],
                        "topics": topics,
                        "token_version": 0,
                        "created_at": now - timedelta(days=30),
                        "confirmed_at": now - timedelta(days=30),
                        "updated_at": now - timedelta(days=30),
                    }
                )
            conn.execute(subscribers.insert(), rows)
        ids = conn.execute(sa.select(subscribers.c.id).order_by(subscribers.c.id)).scalars().all()
        for start in range(0, len(ids), chunk):
            conn.execute(
                subscriptions.insert(),
                [
                    {
                        "subscriber_id": sid,
                        "newsletter_id": newsletter_id,
                        "status": "active",
                        "frequency": "daily",
                        "created_at": now - timedelta(days=30),
                        "confirmed_at": now - timedelta(days=30),
                    }
                    for sid in ids[start : start + chunk]
                ],
            )
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("ANALYZE"))
    return time.perf_counter() - started


# --- workers --------------------------------------------------------------------------------------


def environment(
    url: str, smtp_port: int, redis_db: int, workdir: Path, dkim_key: Path | None
) -> dict[str, str]:
    """The environment of the worker and CLI processes: our settings only."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env.update(
        NEWSLETTER_ENV="development",
        NEWSLETTER_SECRET_KEY=SECRET,
        NEWSLETTER_DATA_DIR=str(workdir / "data"),
        NEWSLETTER_DATABASE_URL=url,
        NEWSLETTER_BROKER_URL=f"redis://127.0.0.1:6379/{redis_db}",
        NEWSLETTER_REDIS_URL=f"redis://127.0.0.1:6379/{redis_db}",
        NEWSLETTER_SMTP_URL=f"smtp://127.0.0.1:{smtp_port}",
        NEWSLETTER_BASE_URL="https://news.example.com/newsletter",
        NEWSLETTER_MAIL_FROM="The Daily Brief <newsletter@news.example.com>",
        NEWSLETTER_BOUNCE_ADDRESS="bounces@news.example.com",
        PYTHONUNBUFFERED="1",
    )
    if dkim_key is not None:
        env.update(
            NEWSLETTER_DKIM_KEY_FILE=str(dkim_key),
            NEWSLETTER_DKIM_SELECTOR="bench",
            NEWSLETTER_DKIM_DOMAIN="news.example.com",
        )
    return env


def purge_queue(env: dict[str, str]) -> None:
    """Drop leftover task messages of an earlier, interrupted run on this broker database."""
    import redis

    client = redis.Redis.from_url(env["NEWSLETTER_BROKER_URL"])
    client.delete("newsletter", "unacked", "unacked_index")
    client.close()


@contextmanager
def worker(env: dict[str, str], processes: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``newsletter worker`` with ``processes`` prefork children; waits until it is ready."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [NEWSLETTER_BIN, "worker", "--concurrency", str(processes), "--loglevel", "info"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while b" ready." not in log.read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start; see {log}:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (from /proc)."""
    found = [pid]
    for child in _children(pid):
        found.extend(process_tree(child))
    return found


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            text = (task / "children").read_text()
            kids.extend(int(x) for x in text.split())
    except OSError:
        pass
    return kids


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds used so far by these processes (from /proc/PID/stat)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / ticks


def postgres_pids() -> list[int]:
    """Every PostgreSQL server process on this machine (backends, WAL writer, checkpointer)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


FLOOR_SECONDS = 2.0  # one floor loop; three make a floor, their median damps this VM's ±20%
QUIET_BUSY = 0.15  # "quiet": under 15% of all CPUs busy over one second


def cpu_busy(interval: float = 1.0) -> float:
    """The fraction of all CPUs' time spent busy (not idle or waiting on I/O) over ``interval``."""

    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle, iowait
        return sum(fields), idle

    total0, idle0 = sample()
    time.sleep(interval)
    total1, idle1 = sample()
    return 1.0 - (idle1 - idle0) / max(1, total1 - total0)


def wait_quiet(limit: float = 60.0) -> float:
    """Wait (up to ``limit`` seconds) until the machine is quiet; return the last busy fraction."""
    deadline = time.monotonic() + limit
    busy = cpu_busy()
    while busy > QUIET_BUSY and time.monotonic() < deadline:
        busy = cpu_busy()
    return busy


def peak_rss_mb(pid: int) -> float:
    """VmHWM (peak resident set) of one process, in MB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def start_profilers(folder: Path | None, pid: int, label: str) -> list[subprocess.Popen[bytes]]:
    """py-spy on every worker child (``--profile``): flame data for finding hot spots."""
    if folder is None:
        return []
    folder.mkdir(parents=True, exist_ok=True)
    spy = str(Path(sys.executable).parent / "py-spy")
    return [
        subprocess.Popen(
            [
                spy,
                "record",
                "-p",
                str(child),
                "-r",
                "200",
                "--format",
                "raw",
                "-o",
                str(folder / f"{label}-{child}.txt"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for child in _children(pid)
    ]


def stop_profilers(profilers: list[subprocess.Popen[bytes]]) -> None:
    """Stop py-spy (SIGINT makes it write its output)."""
    for p in profilers:
        p.send_signal(signal.SIGINT)
    for p in profilers:
        p.wait(timeout=60)


# --- one run --------------------------------------------------------------------------------------


def trigger(env: dict[str, str]) -> int:
    """``newsletter digest send --newsletter daily --quiet``; returns the issue id it printed."""
    done = subprocess.run(
        [NEWSLETTER_BIN, "digest", "send", "--newsletter", "daily", "--quiet"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"digest send failed:\n{done.stdout}\n{done.stderr}")
    return int(done.stdout.strip())


def wait_finished(url: str, issue_id: int, expected: int, timeout: float) -> str:
    """Poll the issue's status until it is final; returns it."""
    from newsletter.store.db import get_engine

    engine = get_engine(url)
    deadline = time.monotonic() + timeout
    status = ""
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            status = conn.execute(
                sa.text("SELECT status FROM issues WHERE id = :id"), {"id": issue_id}
            ).scalar_one()
        if status in ("sent", "failed", "cancelled", "paused", "skipped"):
            return str(status)
        time.sleep(0.5)
    raise RuntimeError(f"issue {issue_id} still {status} after {timeout:.0f}s ({expected} readers)")


def timing(url: str, issue_id: int) -> tuple[int, float, dict[str, int]]:
    """(sent, seconds from the issue's start to the last 'sent' mark, counts by status)."""
    from newsletter.store.db import get_engine
    from newsletter.store.models import Delivery, Issue

    deliveries, issues = Delivery.__table__, Issue.__table__
    with get_engine(url).connect() as conn:
        started = conn.execute(
            sa.select(issues.c.started_at).where(issues.c.id == issue_id)
        ).scalar_one()
        last = conn.execute(
            sa.select(sa.func.max(deliveries.c.sent_at)).where(
                deliveries.c.issue_id == issue_id, deliveries.c.status == "sent"
            )
        ).scalar_one()
        counts = dict(
            conn.execute(
                sa.select(deliveries.c.status, sa.func.count())
                .where(deliveries.c.issue_id == issue_id)
                .group_by(deliveries.c.status)
            ).all()
        )
    sent = int(counts.get("sent", 0))
    if last is None:
        return 0, 0.0, counts
    if last.tzinfo is None:
        last = last.replace(tzinfo=UTC)
    if started.tzinfo is None:
        started = started.replace(tzinfo=UTC)
    return sent, (last - started).total_seconds(), counts


def run_one(
    readers: int,
    db: str,
    dkim_key: Path | None,
    processes: int,
    redis_db: int,
    workdir: Path,
    sink: tuple[int, Path, int],
    profile: Path | None = None,
) -> Result:
    """One full measurement."""
    port, status, sink_pid = sink
    label = f"{readers:,} readers, {db}, dkim={'on' if dkim_key else 'off'}"
    print(f"--- {label}", flush=True)
    with database(db, workdir) as url:
        seed_seconds = seed(url, readers)
        print(f"    seeded in {seed_seconds:.1f}s", flush=True)
        env = environment(url, port, redis_db, workdir, dkim_key)
        purge_queue(env)
        # The send window's peak of open sessions is the workers' alone: the floor loops and
        # the previous run's workers are gone by now.
        reset_sink_peak(sink_pid, status)
        before = sink_counts(status)
        with worker(env, processes, workdir / f"worker-{db}-{readers}.log") as proc:
            profilers = start_profilers(profile, proc.pid, f"{db}-{readers}-dkim{bool(dkim_key)}")
            pids = process_tree(proc.pid)
            # PostgreSQL's CPU: every server process alive at the end, minus what those that
            # existed before had used (a backend that exits meanwhile, the CLI's, is missed).
            db_before = {}
            if db != "sqlite":
                db_before = {pid: cpu_seconds([pid]) for pid in postgres_pids()}
            cpu_before = cpu_seconds(pids), cpu_seconds([sink_pid])
            issue_id = trigger(env)
            final = wait_finished(url, issue_id, readers, timeout=max(600, readers / 50))
            pids = process_tree(proc.pid)
            peaks = [peak_rss_mb(pid) for pid in pids]
            worker_cpu = cpu_seconds(pids) - cpu_before[0]
            sink_cpu = cpu_seconds([sink_pid]) - cpu_before[1]
            db_cpu = (
                sum(cpu_seconds([pid]) - db_before.get(pid, 0.0) for pid in postgres_pids())
                if db != "sqlite"
                else 0.0
            )
            stop_profilers(profilers)
        sent, seconds, counts = timing(url, issue_id)
    after = sink_counts(status)
    received = after.messages - before.messages
    avg_size = (after.bytes - before.bytes) // max(1, received)
    connections = max(1, after.sessions_peak)
    if final != "sent" or sent != received:
        print(f"    WARNING: issue {final}, deliveries {counts}, sink got {received}", flush=True)
    rate = sent / seconds if seconds else 0.0
    print(
        f"    {sent:,} sent in {seconds:.1f}s = {rate:,.0f}/s (avg {avg_size:,} B) over "
        f"{connections} SMTP connection(s) at once",
        flush=True,
    )
    # Dropping the database, autovacuum and the checkpoint after a big run keep the machine
    # busy for a while; a floor measured then would flatter the ratio.
    busy = wait_quiet()
    if busy > QUIET_BUSY:
        print(f"    WARNING: the machine stayed {busy:.0%} busy; the floor may be low", flush=True)
    # Like for like: as many connections as the workers held, then one for comparison. Each
    # floor is the median of three short loops, which one unlucky loop cannot move.
    floor_sink_before, floor_count = cpu_seconds([sink_pid]), sink_counts(status).messages
    k_loops = [
        floor_detail("127.0.0.1", port, avg_size, seconds=FLOOR_SECONDS, connections=connections)
        for _ in range(3)
    ]
    floor_sent = sink_counts(status).messages - floor_count
    floor_sink_cpu_ms = (cpu_seconds([sink_pid]) - floor_sink_before) / max(1, floor_sent) * 1000
    floor_k, floor_cpu_ms = sorted(k_loops)[1]
    floor_1 = median(
        floor_detail("127.0.0.1", port, avg_size, seconds=FLOOR_SECONDS)[0] for _ in range(3)
    )
    worker_cpu_ms = worker_cpu / max(1, sent) * 1000
    db_cpu_ms = db_cpu / max(1, sent) * 1000
    print(
        f"    floor {floor_1:,.0f}/s on 1 connection, {floor_k:,.0f}/s on {connections} "
        f"(loops {', '.join(f'{r:,.0f}' for r, _ in k_loops)}) -> ratio {rate / floor_k:.2f} "
        f"({rate / floor_1:.2f} of the 1-connection floor); CPU ms a mail: workers "
        f"{worker_cpu_ms:.2f}, sink {sink_cpu / max(1, received) * 1000:.2f}, database "
        f"{db_cpu_ms:.2f} | floor client {floor_cpu_ms:.2f}, sink {floor_sink_cpu_ms:.2f}",
        flush=True,
    )
    return Result(
        readers=readers,
        db=db,
        dkim=dkim_key is not None,
        sent=sent,
        seconds=seconds,
        seed_seconds=seed_seconds,
        rate=rate,
        connections=connections,
        floor_1=floor_1,
        floor_k=floor_k,
        avg_size=avg_size,
        worker_peak_mb=max(peaks) if peaks else 0.0,
        worker_peaks=peaks,
        worker_cpu_ms=worker_cpu_ms,
        sink_cpu_ms=sink_cpu / max(1, received) * 1000,
        floor_cpu_ms=floor_cpu_ms,
        floor_sink_cpu_ms=floor_sink_cpu_ms,
        db_cpu_ms=db_cpu_ms,
    )


def dkim_key_file(workdir: Path) -> Path:
    """A fresh 2048-bit RSA key for the runs with DKIM."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = workdir / "dkim.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def sign_time_ms(key: Path, sample: Path) -> float:
    """Milliseconds per DKIM signature of one received message (the signer alone)."""
    from newsletter.mail.dkim import DKIMSigner

    signer = DKIMSigner.from_pem(key.read_bytes(), "news.example.com", "bench")
    message = sample.read_bytes()
    signer.sign(message)
    n = 500
    start = time.perf_counter()
    for _ in range(n):
        signer.sign(message)
    return (time.perf_counter() - start) / n * 1000


def print_table(results: list[Result]) -> None:
    """The summary table, then the memory ratio 100k/10k for each database and DKIM setting."""
    head = (
        f"{'readers':>9} {'db':>8} {'dkim':>4} {'mails/s':>8} {'conns':>5} {'floor1/s':>8} "
        f"{'floorK/s':>8} {'ratio':>6} {'ratio1':>6} {'avg B':>7} {'worker peak MB':>15} "
        f"{'seed s':>7} {'cpu ms/mail':>11} {'floor cpu':>9} {'sink cpu':>8} {'db cpu':>6}"
    )
    print()
    print(head)
    print("-" * len(head))
    for r in results:
        print(
            f"{r.readers:>9,} {r.db:>8} {'on' if r.dkim else 'off':>4} {r.rate:>8,.0f} "
            f"{r.connections:>5} {r.floor_1:>8,.0f} {r.floor_k:>8,.0f} {r.ratio:>6.2f} "
            f"{r.ratio_1:>6.2f} {r.avg_size:>7,} {r.worker_peak_mb:>15.1f} "
            f"{r.seed_seconds:>7.1f} {r.worker_cpu_ms:>11.2f} {r.floor_cpu_ms:>9.2f} "
            f"{r.sink_cpu_ms:>8.2f} {r.db_cpu_ms:>6.2f}"
        )
    print(
        "conns: SMTP connections the workers held open at once; floorK/s: bare smtplib over that\n"
        "many connections (ratio = mails/s / floorK/s); floor1/s, ratio1: the same over one;\n"
        "cpu ms/mail: CPU time of all worker processes per mail sent (load-independent);\n"
        "floor cpu: CPU time of the bare smtplib clients of the K-connection floor per mail (the "
        "sink's own\nCPU excluded from both); sink cpu, db cpu: the sink's and PostgreSQL's CPU "
        "time per mail during\nthe send (db: every postgres process, so quiet the machine first)"
    )
    by_key = {(r.readers, r.db, r.dkim): r for r in results}
    sizes = sorted({r.readers for r in results})
    if len(sizes) >= 2:
        small, big = sizes[0], sizes[-1]
        for (n, db, dkim), r in sorted(by_key.items()):
            if n != big or (small, db, dkim) not in by_key:
                continue
            base = by_key[(small, db, dkim)].worker_peak_mb
            print(
                f"peak memory {big:,}/{small:,} ({db}, dkim {'on' if dkim else 'off'}): "
                f"{r.worker_peak_mb / base:.2f}x"
            )


def main(argv: list[str] | None = None) -> int:
    """Run the matrix and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readers", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--dkim", choices=["off", "on", "both"], default="off")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (prefork)")
    parser.add_argument("--redis-db", type=int, default=13, help="Redis database for the broker")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    parser.add_argument(
        "--profile", type=Path, help="record py-spy profiles of the workers into this folder"
    )
    args = parser.parse_args(argv)
    dbs = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    dkims = [False, True] if args.dkim == "both" else [args.dkim == "on"]
    workdir = Path(tempfile.mkdtemp(prefix="nl-bench-"))
    print(f"work folder {workdir}", flush=True)
    results: list[Result] = []
    key = dkim_key_file(workdir)
    try:
        with sink_process(workdir) as sink:
            for readers in args.readers:
                for db in dbs:
                    for dkim in dkims:
                        results.append(
                            run_one(
                                readers,
                                db,
                                key if dkim else None,
                                args.workers,
                                args.redis_db,
                                workdir,
                                sink,
                                args.profile,
                            )
                        )
        samples = sorted((workdir / "sunk").glob("*.eml"))
        print_table(results)
        if samples:
            print(f"DKIM sign time: {sign_time_ms(key, samples[0]):.2f} ms a mail (signer alone)")
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
