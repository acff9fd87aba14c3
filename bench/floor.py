"""The floor: bare smtplib loops, one process and connection each, sending prebuilt messages.

Every dispatch figure is a ratio of this number measured in the same run, against the same sink,
with messages of the same size and as many connections as the workers held, so the machine's
speed and the round trips of one connection cancel out.

    python bench/floor.py --port 2525 --size 12000 --seconds 3 --connections 2
"""

from __future__ import annotations

import argparse
import multiprocessing
import smtplib
import sys
import time
import uuid
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier as BarrierType

FILLER = (
    b"The quick brown fox jumps over the lazy dog; pack my box with five dozen liquor jugs. "
    b"Sphinx of black quartz, judge my vow."
)


def prebuilt_messages(size: int, count: int = 64) -> list[bytes]:
    """``count`` distinct CRLF messages of about ``size`` bytes each (headers included)."""
    messages = []
    for i in range(count):
        head = (
            "From: The Daily Brief <newsletter@news.example.com>\r\n"
            f"To: reader{i}@example.org\r\n"
            "Subject: Your daily digest\r\n"
            "Date: Mon, 01 Jul 2024 08:00:00 +0000\r\n"
            f"Message-ID: <{uuid.uuid4().hex}@news.example.com>\r\n"
            "MIME-Version: 1.0\r\n"
            'Content-Type: text/plain; charset="utf-8"\r\n'
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        ).encode()
        lines = []
        total = len(head)
        while total < size:
            line = FILLER[: max(1, min(len(FILLER), size - total - 2))]
            lines.append(line)
            total += len(line) + 2
        messages.append(head + b"\r\n".join(lines) + b"\r\n")
    return messages


def measure_floor(
    host: str,
    port: int,
    size: int,
    *,
    count: int = 10000,
    seconds: float = 0.0,
    connections: int = 1,
) -> float:
    """Mails per second of ``smtplib.sendmail(bytes)`` over ``connections`` connections.

    Sends ``count`` messages in all, or as many as fit in ``seconds`` when that is positive.
    """
    return floor_detail(host, port, size, count=count, seconds=seconds, connections=connections)[0]


def _send_loop(
    host: str,
    port: int,
    size: int,
    count: int,
    seconds: float,
    barrier: BarrierType,
    results: Queue[tuple[int, float, float, float] | str],
) -> None:
    """One floor connection: connect, wait for the others, send, report (sent, start, end, cpu)."""
    try:
        messages = prebuilt_messages(size)
        conn = smtplib.SMTP(host, port, timeout=30)
        conn.ehlo()
        # Every connection is open and greeted before any sends, so all K loops overlap fully.
        barrier.wait(timeout=60)
        n = len(messages)
        sent = 0
        # CLOCK_MONOTONIC is one clock for every process on Linux: the parent compares them.
        start = time.monotonic()
        cpu = time.process_time()
        deadline = start + seconds if seconds > 0 else float("inf")
        while (sent < count or seconds > 0) and time.monotonic() < deadline:
            conn.sendmail(
                "bounces@news.example.com", [f"reader{sent}@example.org"], messages[sent % n]
            )
            sent += 1
        end = time.monotonic()
        cpu = time.process_time() - cpu
        conn.quit()
        results.put((sent, start, end, cpu))
    except Exception as exc:  # reported to the parent, which raises it
        barrier.abort()
        results.put(f"floor connection failed: {exc!r}")


def floor_detail(
    host: str,
    port: int,
    size: int,
    *,
    count: int = 10000,
    seconds: float = 0.0,
    connections: int = 1,
) -> tuple[float, float]:
    """(mails per second, client CPU milliseconds per mail) of the bare smtplib loop.

    ``connections`` processes, one connection each, start together; the rate is every mail sent
    over the wall time from the first start to the last end, the CPU the sum over the processes.
    """
    # spawn, not fork: the caller may run threads (the test's in-process sink).
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(connections)
    results: Queue[tuple[int, float, float, float] | str] = ctx.Queue()
    shares = [count // connections + (i < count % connections) for i in range(connections)]
    procs = [
        ctx.Process(target=_send_loop, args=(host, port, size, share, seconds, barrier, results))
        for share in shares
    ]
    for proc in procs:
        proc.start()
    try:
        timeout = (seconds if seconds > 0 else 600) + 120
        reports = [results.get(timeout=timeout) for _ in procs]
    finally:
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
    errors = [r for r in reports if isinstance(r, str)]
    if errors:
        raise RuntimeError("; ".join(errors))
    loops = [r for r in reports if not isinstance(r, str)]
    sent = sum(r[0] for r in loops)
    elapsed = max(r[2] for r in loops) - min(r[1] for r in loops)
    cpu = sum(r[3] for r in loops)
    return sent / elapsed, cpu / max(1, sent) * 1000


def main(argv: list[str] | None = None) -> int:
    """Print the floor in mails/s."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2525)
    parser.add_argument("--size", type=int, default=12000, help="bytes per message")
    parser.add_argument("--count", type=int, default=10000, help="messages in all")
    parser.add_argument("--seconds", type=float, default=0.0, help="run for a time instead")
    parser.add_argument(
        "--connections", type=int, default=1, help="processes, one SMTP connection each"
    )
    args = parser.parse_args(argv)
    rate, cpu_ms = floor_detail(
        args.host,
        args.port,
        args.size,
        count=args.count,
        seconds=args.seconds,
        connections=args.connections,
    )
    print(
        f"floor: {rate:,.0f} mails/s (smtplib, {args.connections} connection(s), "
        f"{args.size} B messages; client CPU {cpu_ms:.2f} ms a mail)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
