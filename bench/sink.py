"""A minimal, fast SMTP sink for benchmarks: accepts everything, counts messages and bytes.

aiosmtpd tops out around 600 mails/s, which would make the sink the bottleneck of every figure.
This server speaks just enough SMTP for smtplib and our transport (EHLO/HELO, MAIL, RCPT, DATA with
dot-unstuffing end detection, RSET, NOOP, QUIT, PIPELINING) with one thread per connection and a
buffered parser that answers a whole pipelined group with one write.

    python bench/sink.py --port 2525 --status-file /tmp/sink.json

The status file (JSON: messages, bytes, connections = sessions in total, sessions_open = open now,
sessions_peak = most open at once) is rewritten a few times a second while counts change; SIGUSR1
restarts the peak from the sessions open now (to measure one window, e.g. a send); SIGTERM or SIGINT
writes the file one last time and prints the totals.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path
from types import FrameType

CRLF = b"\r\n"
END_OF_DATA = b"\r\n.\r\n"


class Counters:
    """Totals shared by every connection thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.messages = 0
        self.bytes = 0
        self.connections = 0  # sessions accepted in total
        self.open = 0  # sessions open now
        self.peak = 0  # most sessions open at once since the start or reset_peak()
        self.first_at = 0.0
        self.last_at = 0.0

    def add_message(self, size: int) -> int:
        """Count one message; return its sequence number (1-based)."""
        now = time.time()
        with self.lock:
            self.messages += 1
            self.bytes += size
            if not self.first_at:
                self.first_at = now
            self.last_at = now
            return self.messages

    def session_opened(self) -> None:
        """Count a new session, open until :meth:`session_closed`."""
        with self.lock:
            self.connections += 1
            self.open += 1
            self.peak = max(self.peak, self.open)

    def session_closed(self) -> None:
        """One session fewer open."""
        with self.lock:
            self.open -= 1

    def reset_peak(self) -> None:
        """Restart the peak from the sessions open now (the start of a measured window)."""
        with self.lock:
            self.peak = self.open

    def snapshot(self) -> dict[str, float | int]:
        """Current totals as a JSON-able dict."""
        with self.lock:
            return {
                "messages": self.messages,
                "bytes": self.bytes,
                "connections": self.connections,
                "sessions_open": self.open,
                "sessions_peak": self.peak,
                "first_at": self.first_at,
                "last_at": self.last_at,
            }


class Sink:
    """The server: a listening socket, a thread per connection, shared counters."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        pipelining: bool = True,
        save_dir: Path | None = None,
        save_count: int = 0,
    ) -> None:
        self.counters = Counters()
        self.pipelining = pipelining
        self.save_dir = save_dir
        self.save_count = save_count
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, port))
        self.listener.listen(128)
        self.port: int = self.listener.getsockname()[1]
        self._stopping = threading.Event()

    def serve_forever(self) -> None:
        """Accept connections until :meth:`stop`."""
        while not self._stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                break
            # Counted here, before the thread starts, so a snapshot never misses a session.
            self.counters.session_opened()
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            thread.start()

    def start(self) -> Sink:
        """Serve in a background thread (for tests)."""
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop accepting; open connections die with the process."""
        self._stopping.set()
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()

    def _serve(self, conn: socket.socket) -> None:
        """One SMTP session."""
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        closed = False
        try:
            closed = self._session(conn)
        except OSError:
            pass
        finally:
            conn.close()
            if not closed:
                self.counters.session_closed()

    def _session(self, conn: socket.socket) -> bool:
        """Serve until EOF or QUIT; True when QUIT already counted the session closed."""
        ext = b"250-PIPELINING\r\n" if self.pipelining else b""
        ehlo = b"250-sink\r\n" + ext + b"250-8BITMIME\r\n250-SIZE 52428800\r\n250 SMTPUTF8\r\n"
        conn.sendall(b"220 sink ESMTP ready\r\n")
        buf = b""
        in_data = False
        out: list[bytes] = []
        recv = conn.recv
        while True:
            chunk = recv(262144)
            if not chunk:
                return False
            buf += chunk
            while buf:
                if in_data:
                    # The end marker may straddle reads: buf keeps everything since DATA's 354.
                    if buf.startswith(b".\r\n"):  # the empty message
                        body, buf = b"", buf[3:]
                    else:
                        end = buf.find(END_OF_DATA)
                        if end < 0:
                            break
                        body, buf = buf[: end + 2], buf[end + 5 :]
                    in_data = False
                    seq = self.counters.add_message(len(body))
                    if self.save_dir is not None and seq <= self.save_count:
                        (self.save_dir / f"{seq:06d}.eml").write_bytes(unstuff(body))
                    out.append(b"250 2.0.0 Ok: queued\r\n")
                    continue
                nl = buf.find(b"\n")
                if nl < 0:
                    break
                line, buf = buf[: nl + 1], buf[nl + 1 :]
                verb = line[:4].upper()
                if verb == b"DATA":
                    out.append(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                    in_data = True
                elif verb in (b"MAIL", b"RCPT"):
                    out.append(b"250 2.1.0 Ok\r\n")
                elif verb == b"EHLO":
                    out.append(ehlo)
                elif verb == b"HELO":
                    out.append(b"250 sink\r\n")
                elif verb in (b"RSET", b"NOOP"):
                    out.append(b"250 2.0.0 Ok\r\n")
                elif verb == b"QUIT":
                    out.append(b"221 2.0.0 Bye\r\n")
                    # Closed before the 221 goes out: a client that quits and reconnects at once
                    # (a pool retiring a connection) must not look like two sessions at once.
                    self.counters.session_closed()
                    conn.sendall(b"".join(out))
                    return True
                else:
                    out.append(b"502 5.5.2 Command not recognized\r\n")
            if out:  # everything buffered is answered: one write for a pipelined group
                conn.sendall(b"".join(out))
                out.clear()


def unstuff(body: bytes) -> bytes:
    """Undo SMTP dot-stuffing of a received body."""
    body = body.replace(b"\r\n..", b"\r\n.")
    return body[1:] if body.startswith(b"..") else body


def _write_status(path: Path | None, counters: Counters) -> None:
    """Atomically rewrite the status file."""
    if path is None:
        return
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(counters.snapshot()))
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    """Run the sink until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2525)
    parser.add_argument("--status-file", type=Path)
    parser.add_argument("--no-pipelining", action="store_true", help="do not offer PIPELINING")
    parser.add_argument("--save-dir", type=Path, help="keep the first --save-count messages")
    parser.add_argument("--save-count", type=int, default=20)
    args = parser.parse_args(argv)
    if args.save_dir:
        args.save_dir.mkdir(parents=True, exist_ok=True)
    sink = Sink(
        args.host,
        args.port,
        pipelining=not args.no_pipelining,
        save_dir=args.save_dir,
        save_count=args.save_count,
    )
    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGUSR1, lambda signum, frame: sink.counters.reset_peak())
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    print(f"sink listening on {args.host}:{sink.port}", flush=True)
    last: dict[str, float | int] = {}
    while not done.wait(0.2):
        snap = sink.counters.snapshot()
        if snap != last:
            _write_status(args.status_file, sink.counters)
            last = snap
    sink.stop()
    _write_status(args.status_file, sink.counters)
    snap = sink.counters.snapshot()
    print(
        f"sink: {snap['messages']} messages, {snap['bytes']} bytes, "
        f"{snap['connections']} connections, at most {snap['sessions_peak']} at once",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
