"""A throwaway PostgreSQL cluster on its own port, for tests that stop and restart the server.

The machine's shared server (5432) must never be restarted by a test, so a fault test builds its
own with Debian's initdb and pg_ctl in a temporary folder, on a free loopback port. PostgreSQL
refuses to run as root; as root the cluster is made and run as the ``postgres`` user. Missing
binaries mean a skip whose reason names PostgreSQL (a failure under CI=true, see ci_skips.py).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.smtp import free_port

BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


@dataclass
class Cluster:
    """A running cluster: its data directory, port, and how to stop and start it."""

    data: Path
    port: int
    bin: Path
    user: str | None  # run as this user (when the tests run as root)

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the cluster's ``postgres`` database."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str, timeout: float = 60) -> None:
        """Run a PostgreSQL binary as the cluster's user; fail the test on a non-zero exit."""
        command = [str(self.bin / argv[0]), *argv[1:]]
        if self.user:
            command = ["runuser", "-u", self.user, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            pytest.fail(f"{' '.join(argv[:2])} failed:\n{done.stdout}\n{done.stderr}")

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "start")

    def stop(self) -> None:
        """Stop the server at once (fast shutdown: every connection is cut)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    @property
    def log(self) -> Path:
        """The server's log file."""
        return self.data.parent / "postgres.log"


@contextmanager
def throwaway_cluster() -> Iterator[Cluster]:
    """initdb a cluster in a fresh temporary folder, start it, and remove it afterwards."""
    if not BIN_DIRS or not (BIN_DIRS[0] / "initdb").exists():
        pytest.skip("PostgreSQL's initdb and pg_ctl are not installed (/usr/lib/postgresql)")
    user = "postgres" if os.geteuid() == 0 else None
    # Not under tmp_path: pytest's base folder is private to root, and postgres must reach it.
    root = Path(tempfile.mkdtemp(prefix="newsletter-pg-"))
    data = root / "data"
    if user:
        entry = pwd.getpwnam(user)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    cluster = Cluster(data, free_port(), BIN_DIRS[0], user)
    cluster._run("initdb", "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync")
    cluster.start()
    try:
        yield cluster
    finally:
        subprocess.run(
            [
                *(["runuser", "-u", user, "--"] if user else []),
                str(cluster.bin / "pg_ctl"),
                "-D",
                str(data),
                "-m",
                "immediate",
                "stop",
            ],
            capture_output=True,
            check=False,
        )
        shutil.rmtree(root, ignore_errors=True)
