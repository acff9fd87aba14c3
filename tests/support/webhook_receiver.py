"""A webhook receiver written from the Standard Webhooks spec, apart from the code under test.

A threaded HTTP server on 127.0.0.1 that checks each POST as the spec tells a receiver to: the
three headers present, ``webhook-timestamp`` within five minutes of its clock, and one of the
space-separated ``v1,<base64>`` signatures equal (in constant time) to the base64 HMAC-SHA256,
keyed with the base64-decoded part of the ``whsec_`` secret, of ``"{id}.{timestamp}.{body}"``.
It keeps every request with its verdict, and can be told to answer 500 the next N times.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOLERANCE_SECONDS = 5 * 60


@dataclass(frozen=True)
class Received:
    """One request as the receiver saw it."""

    headers: dict[str, str]
    body: bytes
    verified: bool
    problem: str
    status: int  # what the receiver answered

    @property
    def event(self) -> dict[str, Any]:
        """The JSON body."""
        value: dict[str, Any] = json.loads(self.body)
        return value


def verify(secret: str, headers: dict[str, str], body: bytes, now: float) -> str:
    """What is wrong with the request (the spec's checks), or "" when it is authentic and recent."""
    msg_id = headers.get("webhook-id")
    stamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not msg_id or not stamp or not signatures:
        return "missing header"
    if not stamp.isdigit() or abs(now - int(stamp)) > TOLERANCE_SECONDS:
        return "timestamp outside the tolerance"
    if not secret.startswith("whsec_"):
        return "bad secret"
    key = base64.b64decode(secret[len("whsec_") :])
    content = msg_id.encode() + b"." + stamp.encode() + b"." + body
    expected = base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
    for entry in signatures.split(" "):
        version, _, value = entry.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return ""
    return "no valid signature"


class WebhookReceiver:
    """Start with :meth:`start`; set :attr:`secret` once the endpoint's secret is known."""

    def __init__(self) -> None:
        self.secret = ""
        self.received: list[Received] = []
        self.fail_next = 0  # answer 500 to this many requests first
        self._lock = threading.Condition()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """Where to register the endpoint."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/hooks"

    def start(self) -> WebhookReceiver:
        """Serve in a thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def wait_for(self, count: int, timeout: float = 60) -> list[Received]:
        """Block until ``count`` requests came (AssertionError after ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.received) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"{len(self.received)} webhook requests within {timeout} s, "
                        f"expected {count}"
                    )
                self._lock.wait(left)
            return list(self.received)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                problem = verify(receiver.secret, headers, body, time.time())
                with receiver._lock:
                    failing = receiver.fail_next > 0
                    receiver.fail_next -= 1 if failing else 0
                    status = 500 if failing else (400 if problem else 200)
                    receiver.received.append(Received(headers, body, not problem, problem, status))
                    receiver._lock.notify_all()
                answer = b"receiver trouble" if failing else (problem or "ok").encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet test output

        return Handler
