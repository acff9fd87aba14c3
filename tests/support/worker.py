"""Run the real ``newsletter`` command (worker, web, …) as subprocesses in integration tests.

Typical use, with real Redis, PostgreSQL and an aiosmtpd sink::

    with redis_test_db() as broker_url, fresh_postgres_database() as database_url:
        env = service_env(tmp_path, database_url=database_url, broker_url=broker_url,
                          smtp_url=sink.url)
        run_newsletter(["db", "upgrade"], env)
        with WorkerProcess(env, tmp_path / "worker.log") as worker:
            ...                 # enqueue work, assert on sink.messages / the database
            worker.kill()       # SIGKILL the worker and its pool processes (a crash)
            worker.start()      # a fresh worker picks up the unacknowledged tasks
            worker.restart()    # graceful stop (warm shutdown) + start

``WebProcess`` runs ``newsletter web`` (gunicorn) on a free port, ready when ``/healthz`` is 200
(it serves requests; ``/readyz`` would also wait for the broker, which some tests stop).
To boot several at once: ``launch()`` each, then ``wait_ready()`` each. ``wait_for_log(regex)``
waits for a line in the output since the last start; ``log_text()`` returns that output.

Every process runs in its own process group, so ``kill()`` takes its pool children with it and a
test never leaves processes behind. Output goes to a log file whose tail is put into the
assertion message when a process fails to become ready or dies (``describe()``).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

import pytest
import requests

from tests.support import services
from tests.support.smtp import free_port

SECRET_KEY = "integration-secret-key-that-is-long-enough-0123456789"
NEWSLETTER = [sys.executable, "-m", "newsletter.cli"]
REDIS_LOCK_DB = 15
REDIS_TEST_DBS = range(1, 15)


def base_env(**overrides: str) -> dict[str, str]:
    """This process's environment without any NEWSLETTER_* variable, plus ``overrides``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(overrides)
    return env


def service_env(
    data_dir: Path,
    *,
    database_url: str,
    broker_url: str,
    smtp_url: str,
    base_url: str = "http://127.0.0.1:5000",
    env: str = "testing",
    **extra: str,
) -> dict[str, str]:
    """Environment for `newsletter` subprocesses; ``extra`` maps field names to values."""
    values = {
        "NEWSLETTER_ENV": env,
        "NEWSLETTER_DATA_DIR": str(data_dir),
        "NEWSLETTER_DATABASE_URL": database_url,
        "NEWSLETTER_BROKER_URL": broker_url,
        "NEWSLETTER_SMTP_URL": smtp_url,
        "NEWSLETTER_BASE_URL": base_url,
        "NEWSLETTER_SECRET_KEY": SECRET_KEY,
    }
    values.update({f"NEWSLETTER_{k.upper()}": v for k, v in extra.items()})
    return base_env(**values)


def run_newsletter(
    args: Sequence[str], env: Mapping[str, str], *, timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run ``newsletter ARGS`` to completion; with ``check`` fail the test on a non-zero exit."""
    result = subprocess.run(
        [*NEWSLETTER, *args],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and result.returncode != 0:
        pytest.fail(
            f"`newsletter {' '.join(args)}` exited {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result


class ManagedProcess:
    """A long-running ``newsletter`` subcommand: start, wait until ready, stop, kill, restart."""

    name = "process"

    def __init__(self, args: Sequence[str], env: Mapping[str, str], log_path: Path) -> None:
        self.args = list(args)
        self.env = dict(env)
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    # -- what subclasses define ----------------------------------------------------------------
    def is_ready(self) -> bool:
        """True once the process can do its job (subclasses decide how to tell)."""
        return self.alive

    # -- lifecycle -------------------------------------------------------------------------------
    @property
    def pid(self) -> int:
        """Process id of the running command (the group leader)."""
        assert self.proc is not None, f"{self.name} was never started"
        return self.proc.pid

    @property
    def alive(self) -> bool:
        """True while the main process runs."""
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 60) -> ManagedProcess:
        """Start the process and block until :meth:`is_ready` (fail the test otherwise)."""
        self.launch()
        return self.wait_ready(timeout)

    def launch(self) -> ManagedProcess:
        """Start the process without waiting (start several, then :meth:`wait_ready` each)."""
        assert not self.alive, f"{self.name} is already running"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._log_offset = log.tell()
            log.write(f"\n=== start {' '.join(self.args)} ===\n".encode())
            self.proc = subprocess.Popen(
                [*NEWSLETTER, *self.args],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: kill() reaches pool children
            )
        return self

    def wait_ready(self, timeout: float = 60) -> ManagedProcess:
        """Block until :meth:`is_ready`; fail the test with the log tail if it never is."""
        self.wait_until(self.is_ready, timeout, "to become ready")
        return self

    def stop(self, timeout: float = 30) -> int | None:
        """Graceful stop: SIGTERM (Celery's warm shutdown), SIGKILL after ``timeout``."""
        if self.proc is None:
            return None
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=timeout)
        self._kill_group()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL the whole process group at once, like a crash or the OOM killer."""
        if self.proc is None:
            return
        self._kill_group()

    def restart(self, timeout: float = 60) -> ManagedProcess:
        """Graceful stop, then start again (same arguments, same log file)."""
        self.stop()
        return self.start(timeout)

    def _kill_group(self) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def __enter__(self) -> ManagedProcess:
        if self.proc is None:
            self.start()
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- logs ------------------------------------------------------------------------------------
    def log_text(self, since_start: bool = True) -> str:
        """The process's output (since the last start, or all of it)."""
        if not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as log:
            log.seek(self._log_offset if since_start else 0)
            return log.read().decode(errors="replace")

    def describe(self, lines: int = 60) -> str:
        """Status and log tail, for assertion messages."""
        status = "running" if self.alive else f"exited with {self.proc and self.proc.returncode}"
        tail = "\n".join(self.log_text(since_start=False).splitlines()[-lines:])
        return f"{self.name} ({status}), log {self.log_path}:\n{tail}"

    def wait_until(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll ``condition``; fail with the log tail if it never holds or the process dies."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            if not self.alive:
                pytest.fail(f"{self.name} died while waiting {what}\n{self.describe()}")
            time.sleep(0.1)
        pytest.fail(f"{self.name} did not manage {what} within {timeout:.0f}s\n{self.describe()}")

    def wait_for_log(self, pattern: str, timeout: float = 30) -> re.Match[str]:
        """Wait until the output since the last start matches the regex ``pattern``."""
        found: list[re.Match[str]] = []

        def seen() -> bool:
            match = re.search(pattern, self.log_text())
            if match:
                found.append(match)
            return match is not None

        self.wait_until(seen, timeout, f"to log {pattern!r}")
        return found[0]


class WorkerProcess(ManagedProcess):
    """``newsletter worker`` (Celery, prefork by default) with a unique node name."""

    name = "worker"

    def __init__(
        self,
        env: Mapping[str, str],
        log_path: Path,
        *,
        concurrency: int = 2,
        pool: str = "prefork",
        loglevel: str = "info",
        extra_args: Sequence[str] = (),
    ) -> None:
        self.node = f"test-{uuid.uuid4().hex[:8]}@%h"
        args = [
            "worker",
            f"--concurrency={concurrency}",
            f"--pool={pool}",
            f"--loglevel={loglevel}",
            f"--hostname={self.node}",
            # No waiting for other nodes: each test's worker is alone on its Redis database.
            "--without-mingle",
            "--without-gossip",
            *extra_args,
        ]
        super().__init__(args, env, log_path)

    def is_ready(self) -> bool:
        """Celery logs "<node> ready." once it consumes from the queue."""
        return re.search(r"test-[0-9a-f]{8}@\S+ ready\.", self.log_text()) is not None


class WebProcess(ManagedProcess):
    """``newsletter web`` (gunicorn) on a free loopback port; ready when /healthz answers 200."""

    name = "web"

    def __init__(
        self, env: Mapping[str, str], log_path: Path, *, port: int | None = None, workers: int = 1
    ) -> None:
        self.port = port or free_port()
        args = ["web", "--host", "127.0.0.1", f"--port={self.port}", f"--workers={workers}"]
        super().__init__(args, env, log_path)

    @property
    def url(self) -> str:
        """Where the site answers."""
        return f"http://127.0.0.1:{self.port}"

    def is_ready(self) -> bool:
        """The health endpoint answers 200 (a gunicorn process serves requests)."""
        try:
            return requests.get(f"{self.url}/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False


class DevProcess(ManagedProcess):
    """``newsletter dev`` (web + worker + beat on embedded defaults) on a free loopback port."""

    name = "newsletter dev"

    def __init__(self, env: Mapping[str, str], log_path: Path, *, port: int | None = None) -> None:
        self.port = port or free_port()
        super().__init__(["dev", "--port", str(self.port)], env, log_path)

    @property
    def url(self) -> str:
        """Where the site answers."""
        return f"http://127.0.0.1:{self.port}"

    def is_ready(self) -> bool:
        """The banner is printed (web listens) and the worker consumes."""
        text = self.log_text()
        return "dev mail viewer" in text and re.search(r"worker \| .* ready\.", text) is not None


@contextmanager
def redis_test_db() -> Iterator[str]:
    """Claim a Redis database (1-14) no other test session uses; yield its URL; flush after.

    The claim is a key in database 15 with an expiry, so parallel test sessions on one machine
    never share a broker, and a crashed session frees its database within the hour.
    """
    if not services.redis_up():
        pytest.skip("Redis is unreachable at 127.0.0.1:6379 (integration tests need it)")
    import redis

    base = services.REDIS_URL.rsplit("/", 1)[0]
    locks = redis.Redis.from_url(f"{base}/{REDIS_LOCK_DB}")
    token = uuid.uuid4().hex
    for number in REDIS_TEST_DBS:
        key = f"newsletter-tests:db:{number}"
        if locks.set(key, token, nx=True, ex=3600):
            break
    else:
        locks.close()
        pytest.fail("all Redis test databases 1-14 are claimed; stale claims expire in an hour")
    url = f"{base}/{number}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()
        if locks.get(key) == token.encode():
            locks.delete(key)
        locks.close()


def require_postgres() -> None:
    """Skip (CI turns it into a failure) when PostgreSQL is unreachable."""
    if not services.postgres_up():
        pytest.skip("PostgreSQL is unreachable at 127.0.0.1:5432 (integration tests need it)")
