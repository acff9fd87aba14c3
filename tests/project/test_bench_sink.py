"""The benchmark sink speaks enough SMTP for smtplib and our transport, and counts what it got."""

from __future__ import annotations

import json
import signal
import smtplib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.floor import floor_detail, measure_floor, prebuilt_messages
from bench.sink import Sink
from newsletter.mail.transport import SMTPTransport, transport_from_url
from tests.support.smtp import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[Sink]:
    server = Sink(save_dir=tmp_path, save_count=5).start()
    yield server
    server.stop()


def wait_count(sink: Sink, n: int) -> dict[str, float | int]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        snap = sink.counters.snapshot()
        if snap["messages"] >= n:
            return snap
        time.sleep(0.01)
    raise AssertionError(f"sink got {sink.counters.snapshot()} not {n} messages")


def test_smtplib_sends_and_sink_counts(sink: Sink, tmp_path: Path) -> None:
    messages = prebuilt_messages(2000, count=3)
    with smtplib.SMTP("127.0.0.1", sink.port, timeout=10) as conn:
        assert conn.ehlo()[0] == 250
        assert conn.has_extn("pipelining")
        for m in messages:
            assert conn.sendmail("a@example.com", ["b@example.org"], m) == {}
        assert conn.noop()[0] == 250
        assert conn.rset()[0] == 250
        # An empty message and a message of dots must both be delimited correctly.
        conn.sendmail("a@example.com", ["b@example.org"], b"")
        conn.sendmail("a@example.com", ["b@example.org"], b".\r\n..\r\n.x\r\n")
    snap = wait_count(sink, 5)
    assert snap["messages"] == 5
    assert snap["connections"] == 1
    assert snap["sessions_peak"] == 1
    # smtplib sends the empty message as one empty line; the sink counts stuffed bytes.
    assert snap["bytes"] == sum(len(m) for m in messages) + 2 + len(b"..\r\n...\r\n..x\r\n")
    saved = sorted(tmp_path.glob("*.eml"))
    assert saved[0].read_bytes() == messages[0]  # dot-unstuffed on save
    assert saved[4].read_bytes() == b".\r\n..\r\n.x\r\n"


def test_pipelined_transport_against_sink(sink: Sink) -> None:
    transport = transport_from_url(f"smtp://127.0.0.1:{sink.port}")
    assert isinstance(transport, SMTPTransport)
    for i, m in enumerate(prebuilt_messages(5000, count=50)):
        assert transport.send("a@example.com", f"r{i}@example.org", m).startswith("250")
    transport.close()
    snap = wait_count(sink, 50)
    assert snap["messages"] == 50
    assert snap["connections"] == 1


def test_sink_counts_sessions_open_at_once(sink: Sink) -> None:
    with (
        smtplib.SMTP("127.0.0.1", sink.port, timeout=10) as one,
        smtplib.SMTP("127.0.0.1", sink.port, timeout=10) as two,
    ):
        one.sendmail("a@example.com", ["b@example.org"], b"one\r\n")
        two.sendmail("a@example.com", ["b@example.org"], b"two\r\n")
        snap = wait_count(sink, 2)
        assert (snap["connections"], snap["sessions_open"], snap["sessions_peak"]) == (2, 2, 2)
    with smtplib.SMTP("127.0.0.1", sink.port, timeout=10) as three:
        three.noop()
    deadline = time.monotonic() + 10
    while sink.counters.snapshot()["sessions_open"] and time.monotonic() < deadline:
        time.sleep(0.01)
    snap = sink.counters.snapshot()
    # The third came after the first two closed: three in total, never more than two at once.
    assert (snap["connections"], snap["sessions_open"], snap["sessions_peak"]) == (3, 0, 2)
    sink.counters.reset_peak()
    assert sink.counters.snapshot()["sessions_peak"] == 0


def test_floor_measures_a_rate(sink: Sink) -> None:
    rate = measure_floor("127.0.0.1", sink.port, 3000, count=200)
    assert rate > 0
    assert wait_count(sink, 200)["messages"] == 200


def test_floor_over_two_connections_at_once(sink: Sink) -> None:
    rate, cpu_ms = floor_detail("127.0.0.1", sink.port, 3000, count=400, connections=2)
    assert rate > 0
    assert cpu_ms > 0
    snap = wait_count(sink, 400)
    assert snap["messages"] == 400
    assert (snap["connections"], snap["sessions_peak"]) == (2, 2)


def test_sink_process_writes_status_and_reports_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    status = tmp_path / "status.json"
    argv = [sys.executable, str(ROOT / "bench" / "sink.py"), "--port", str(port)]
    proc = subprocess.Popen(
        [*argv, "--status-file", str(status)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert "listening" in proc.stdout.readline()
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as conn:
            for m in prebuilt_messages(1000, count=7):
                conn.sendmail("a@example.com", ["b@example.org"], m)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if status.exists() and json.loads(status.read_text())["messages"] == 7:
                break
            time.sleep(0.05)
        assert json.loads(status.read_text())["messages"] == 7
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert "7 messages" in out
