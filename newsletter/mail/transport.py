"""Transports chosen by URL: ``smtp://``, ``smtps://`` and ``capture://`` behind one interface.

A transport sends prebuilt message bytes to one recipient and tells apart temporary failures
(4xx, connection trouble: retry later) from permanent ones (5xx: never retry that address).
"""

from __future__ import annotations

import contextlib
import smtplib
import socket
import ssl
import threading
import time
import uuid
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from newsletter.settings import Settings


class DeliveryError(Exception):
    """Sending one message failed; ``code`` is the SMTP reply code when there was one."""

    permanent = False

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class TemporaryFailure(DeliveryError):
    """4xx or a connection problem: the same message may succeed later."""


class PermanentFailure(DeliveryError):
    """5xx for this recipient: retrying will not help; the address should be suppressed."""

    permanent = True


class Transport(Protocol):
    """Anything that can hand a message to the next hop."""

    def send(self, sender: str, recipient: str, message: bytes) -> str:
        """Deliver ``message`` from ``sender`` to ``recipient``; return the server's reply."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


class CaptureTransport:
    """Development transport: every message becomes an ``.eml`` file the dev mail viewer reads."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)

    def send(self, sender: str, recipient: str, message: bytes) -> str:
        """Write the message atomically under a time-ordered name."""
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
        tmp = self.folder / f".{name}.tmp"
        header = f"X-Envelope-From: {sender}\r\nX-Envelope-To: {recipient}\r\n".encode()
        tmp.write_bytes(header + message)
        tmp.rename(self.folder / f"{name}.eml")
        return "250 captured"

    def close(self) -> None:
        """Nothing to release."""


class SMTPTransport:
    """SMTP with a reused connection, STARTTLS or implicit TLS, and AUTH.

    One instance holds one connection and is not shared between threads; a worker keeps one per
    process (see :func:`get_transport`) so a batch of messages rides one connection.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        implicit_tls: bool = False,
        starttls: bool = False,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
        verify: bool = True,
    ) -> None:
        self.host = host
        self.port = port
        self.implicit_tls = implicit_tls
        self.starttls = starttls
        self.username = username
        self.password = password
        self.timeout = timeout
        self.verify = verify
        self._conn: smtplib.SMTP | None = None

    def _tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _connect(self) -> smtplib.SMTP:
        try:
            conn: smtplib.SMTP
            if self.implicit_tls:
                conn = smtplib.SMTP_SSL(
                    self.host, self.port, timeout=self.timeout, context=self._tls_context()
                )
            else:
                conn = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
                if self.starttls:
                    conn.starttls(context=self._tls_context())
            conn.ehlo_or_helo_if_needed()
            if self.username:
                conn.login(self.username, self.password or "")
            return conn
        except smtplib.SMTPAuthenticationError as exc:
            raise TemporaryFailure(f"SMTP login refused: {exc.smtp_code}", exc.smtp_code) from exc
        except smtplib.SMTPResponseException as exc:
            raise TemporaryFailure(_reply(exc), exc.smtp_code) from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise TemporaryFailure(
                f"cannot reach SMTP server {self.host}:{self.port}: {exc}"
            ) from exc

    def send(self, sender: str, recipient: str, message: bytes) -> str:
        """Send over the open connection, reconnecting once if the server dropped it."""
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = self._connect()
            try:
                refused = self._conn.sendmail(sender, [recipient], message)
                if refused:
                    code, text = refused[recipient]
                    return _classify(code, text)
                return "250 OK"
            except smtplib.SMTPRecipientsRefused as exc:
                code, text = exc.recipients[recipient]
                _raise_for(code, text)
            except smtplib.SMTPServerDisconnected as exc:
                self._conn = None
                if attempt == 2:
                    raise TemporaryFailure(f"SMTP server disconnected: {exc}") from exc
            except smtplib.SMTPResponseException as exc:
                # After an error mid-transaction the session state is unknown: start afresh.
                self._reset()
                _raise_for(exc.smtp_code, exc.smtp_error)
            except (OSError, smtplib.SMTPException) as exc:
                self._drop()
                raise TemporaryFailure(f"SMTP connection failed: {exc}") from exc
        raise TemporaryFailure("SMTP send failed")  # pragma: no cover - loop always returns

    def _reset(self) -> None:
        if self._conn is None:
            return
        try:
            self._conn.rset()
        except (OSError, smtplib.SMTPException):
            self._drop()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.close()

    def close(self) -> None:
        """Say QUIT and close the connection."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.quit()
        except (OSError, smtplib.SMTPException):
            conn.close()


def _reply(exc: smtplib.SMTPResponseException) -> str:
    text = (
        exc.smtp_error.decode(errors="replace")
        if isinstance(exc.smtp_error, bytes)
        else str(exc.smtp_error)
    )
    return f"{exc.smtp_code} {text}"


def _raise_for(code: int, text: bytes | str) -> None:
    message = f"{code} {text.decode(errors='replace') if isinstance(text, bytes) else text}"
    if 500 <= code < 600:
        raise PermanentFailure(message, code)
    raise TemporaryFailure(message, code)


def _classify(code: int, text: bytes | str) -> str:
    _raise_for(code, text)
    return ""  # pragma: no cover - _raise_for always raises


def transport_from_url(url: str, *, timeout: float = 30.0) -> Transport:
    """Build the transport a URL names (``smtp://user:pass@host:port?starttls=true``)."""
    parts = urlsplit(url)
    if parts.scheme == "capture":
        return CaptureTransport(Path(unquote(parts.netloc + parts.path)))
    if parts.scheme not in {"smtp", "smtps"}:
        raise ValueError(f"unsupported mail transport {parts.scheme!r}")
    query = {k: v[-1].lower() for k, v in parse_qs(parts.query).items()}
    implicit = parts.scheme == "smtps"
    return SMTPTransport(
        parts.hostname or "localhost",
        parts.port or (465 if implicit else 25),
        implicit_tls=implicit,
        starttls=query.get("starttls", "false") in {"1", "true", "yes"},
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        timeout=float(query.get("timeout", timeout)),
        verify=query.get("verify", "true") not in {"0", "false", "no"},
    )


_local = threading.local()


def get_transport(settings: Settings) -> Transport:
    """This thread's transport for the configured URL, reused across messages and tasks."""
    cache: dict[str, Transport] = getattr(_local, "transports", None) or {}
    _local.transports = cache
    transport = cache.get(settings.smtp_url)
    if transport is None:
        transport = cache[settings.smtp_url] = transport_from_url(
            settings.smtp_url, timeout=settings.smtp_timeout
        )
    return transport


def hostname() -> str:
    """This machine's name, for Message-IDs when no domain is configured."""
    return socket.getfqdn()
