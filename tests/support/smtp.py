"""A real SMTP server (aiosmtpd) that keeps what it receives, and can be told to misbehave."""

from __future__ import annotations

import email
import email.policy
import socket
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass
class Received:
    """One message as the server got it."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        """The parsed message (modern policy, so defects are collected, not raised)."""
        msg = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        return msg


@dataclass
class SinkHandler:
    """aiosmtpd handler: stores messages; ``reply_for`` can force a reply per recipient."""

    messages: list[Received] = field(default_factory=list)
    reply_for: dict[str, str] = field(default_factory=dict)
    fail_all_with: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if self.fail_all_with:
            return self.fail_all_with
        forced = self.reply_for.get(address.lower())
        if forced:
            return forced
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        with self.lock:
            self.messages.append(
                Received(str(envelope.mail_from), list(envelope.rcpt_tos), bytes(content))
            )
        return "250 Message accepted"


class SMTPSink:
    """Runs aiosmtpd on a free loopback port in a thread."""

    def __init__(self) -> None:
        self.handler = SinkHandler()
        self.port = free_port()
        self.controller = Controller(
            self.handler, hostname="127.0.0.1", port=self.port, decode_data=False
        )

    @property
    def url(self) -> str:
        """The NEWSLETTER_SMTP_URL that reaches this server."""
        return f"smtp://127.0.0.1:{self.port}"

    @property
    def messages(self) -> list[Received]:
        """Everything received so far."""
        with self.handler.lock:
            return list(self.handler.messages)

    def start(self) -> SMTPSink:
        """Start serving."""
        self.controller.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self.controller.stop()

    def clear(self) -> None:
        """Forget received messages."""
        with self.handler.lock:
            self.handler.messages.clear()

    def wait_for(self, count: int, timeout: float = 30.0) -> list[Received]:
        """Wait until at least ``count`` messages arrived; fail the test otherwise."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.messages
            if len(got) >= count:
                return got
            time.sleep(0.05)
        raise AssertionError(f"expected {count} messages, got {len(self.messages)}")

    def to(self, address: str) -> list[Received]:
        """Messages addressed to ``address``."""
        return [m for m in self.messages if address.lower() in (r.lower() for r in m.rcpt_tos)]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
