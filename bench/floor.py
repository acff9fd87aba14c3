"""The floor: a bare smtplib loop over ONE connection sending prebuilt messages to the sink.

Every dispatch figure is a ratio of this number measured in the same run, against the same sink,
with messages of the same size, so the machine's speed cancels out.

    python bench/floor.py --port 2525 --size 12000 --count 20000
"""

from __future__ import annotations

import argparse
import smtplib
import sys
import time
import uuid

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
    host: str, port: int, size: int, *, count: int = 10000, seconds: float = 0.0
) -> float:
    """Mails per second of ``smtplib.sendmail(bytes)`` over one connection.

    Sends ``count`` messages, or as many as fit in ``seconds`` when that is positive.
    """
    return floor_detail(host, port, size, count=count, seconds=seconds)[0]


def floor_detail(
    host: str, port: int, size: int, *, count: int = 10000, seconds: float = 0.0
) -> tuple[float, float]:
    """(mails per second, client CPU milliseconds per mail) of the bare smtplib loop."""
    messages = prebuilt_messages(size)
    conn = smtplib.SMTP(host, port, timeout=30)
    conn.ehlo()
    n = len(messages)
    sent = 0
    start = time.perf_counter()
    cpu = time.process_time()
    deadline = start + seconds if seconds > 0 else float("inf")
    while (sent < count or seconds > 0) and time.perf_counter() < deadline:
        conn.sendmail("bounces@news.example.com", [f"reader{sent}@example.org"], messages[sent % n])
        sent += 1
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu
    conn.quit()
    return sent / elapsed, cpu / sent * 1000


def main(argv: list[str] | None = None) -> int:
    """Print the floor in mails/s."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2525)
    parser.add_argument("--size", type=int, default=12000, help="bytes per message")
    parser.add_argument("--count", type=int, default=10000)
    parser.add_argument("--seconds", type=float, default=0.0, help="run for a time instead")
    args = parser.parse_args(argv)
    rate = measure_floor(args.host, args.port, args.size, count=args.count, seconds=args.seconds)
    print(f"floor: {rate:,.0f} mails/s (smtplib, one connection, {args.size} B messages)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
