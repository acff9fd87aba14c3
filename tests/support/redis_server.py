"""A throwaway ``redis-server`` of a test's own, on a free loopback port, that it may stop.

The machine's shared Redis must never be stopped, so a test of what happens when Redis goes away
starts this one (no persistence), kills it and starts it again on the same port.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.support.smtp import free_port


class RedisServer:
    """One ``redis-server`` process: :meth:`start`, :meth:`kill`, :meth:`start` again."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        """The URL of database ``db`` on this server."""
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self, timeout: float = 10) -> RedisServer:
        """Start the server and wait until it accepts connections."""
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed")
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"redis-server on port {self.port} exited {self.proc.returncode}")
            if self.answers():
                return self
            time.sleep(0.05)
        pytest.fail(f"redis-server on port {self.port} did not answer within {timeout:.0f}s")

    def answers(self) -> bool:
        """True when the server replies to PING."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL the server (a crash) and wait until it is gone."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@contextmanager
def redis_server() -> Iterator[RedisServer]:
    """A started throwaway server, killed when the block ends."""
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.kill()
