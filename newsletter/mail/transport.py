"""Transports chosen by URL: ``smtp://``, ``smtps://`` and ``capture://`` behind one interface.

A transport sends prebuilt message bytes to one recipient and tells apart temporary failures
(4xx, connection trouble: retry later) from permanent ones (5xx: never retry that mail), see
:mod:`newsletter.mail.smtp_errors`.

URL forms (credentials percent-encoded, never logged)::

    smtp://user:pass@host:587?starttls=true      STARTTLS, then AUTH
    smtps://user:pass@host:465                   implicit TLS
    smtp://127.0.0.1:25                          plain, no AUTH (a local relay)
    capture:///var/lib/newsletter/mail           development: every mail becomes an .eml file

Query options: ``starttls=true``, ``verify=false`` (self-signed dev servers only),
``timeout=SECONDS`` (every connect/read/write; default NEWSLETTER_SMTP_TIMEOUT),
``max_messages=N`` (reconnect after N mails on one connection; 0 = never),
``idle_timeout=SECONDS`` (a connection unused that long is closed, not reused; default 60).

Connections: each worker *process* keeps a small pool of up to NEWSLETTER_SMTP_POOL_SIZE open
connections per URL, reused across messages and tasks. A thread takes the most recently used idle
connection for each message, so one thread sending a batch rides one connection. Celery's default
prefork pool runs one task at a time per child process, so each child opens one connection and a
worker started with ``--concurrency=N`` holds N connections; the pool size only caps threads
(``--pool=threads``): there, at most ``pool_size`` sends run at once and the rest wait their turn.
Total connections to the relay = processes x min(threads per process, pool size).
"""

from __future__ import annotations

import contextlib
import logging
import os
import smtplib
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlsplit

from newsletter.mail.smtp_errors import (
    DeliveryError,
    PermanentFailure,
    TemporaryFailure,
    TransportConfigError,
    failure_for,
    reply_text,
)
from newsletter.mail.wire import crlf, dot_stuff
from newsletter.settings import Settings

log = logging.getLogger(__name__)

__all__ = [
    "CaptureTransport",
    "DeliveryError",
    "PermanentFailure",
    "SMTPTransport",
    "TemporaryFailure",
    "Transport",
    "TransportConfigError",
    "close_transports",
    "get_transport",
    "hostname",
    "transport_from_url",
]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_OPTIONS = {"starttls", "verify", "timeout", "max_messages", "idle_timeout"}


class Transport(Protocol):
    """Anything that can hand a message to the next hop."""

    def send(self, sender: str, recipient: str, message: bytes, *, crlf_ok: bool = False) -> str:
        """Deliver ``message`` from ``sender`` to ``recipient``; return the server's reply.

        ``crlf_ok``: the caller guarantees every line of ``message`` ends with CRLF (the
        renderer builds them so), sparing a scan of the whole message per mail.
        """
        ...

    def close(self) -> None:
        """Release connections."""
        ...


class CaptureTransport:
    """Development transport: every message becomes an ``.eml`` file the dev mail viewer reads.

    Safe for several processes at once: each file is written under a unique temporary name
    (time, pid, random) and renamed into place, so a reader never sees half a message.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)

    def send(self, sender: str, recipient: str, message: bytes, *, crlf_ok: bool = False) -> str:
        """Write the message atomically under a time-ordered name."""
        name = f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        tmp = self.folder / f".{name}.tmp"
        header = f"X-Envelope-From: {sender}\r\nX-Envelope-To: {recipient}\r\n".encode()
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
            with os.fdopen(fd, "wb") as out:
                out.write(header + crlf(message))
            os.replace(tmp, self.folder / f"{name}.eml")
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise TemporaryFailure(f"cannot write captured mail to {self.folder}: {exc}") from exc
        return "250 captured"

    def close(self) -> None:
        """Nothing to release."""


class _Connection:
    """One open SMTP session and what its EHLO said."""

    def __init__(self, smtp: smtplib.SMTP) -> None:
        self.smtp = smtp
        self.pipelining = smtp.has_extn("pipelining")
        self.smtputf8 = smtp.has_extn("smtputf8")
        self.size = smtp.has_extn("size")
        self.eightbit = smtp.has_extn("8bitmime")
        self.messages = 0
        self.last_used = time.monotonic()

    def close(self) -> None:
        """Drop the socket without a goodbye (the session's state is unknown)."""
        with contextlib.suppress(OSError):
            self.smtp.close()

    def quit(self) -> None:
        """Say QUIT politely, then close."""
        try:
            self.smtp.quit()
        except (OSError, smtplib.SMTPException):
            self.close()


class _Retry(Exception):
    """A reused connection turned out dead before the message went out: try a fresh one."""

    def __init__(self, cause: DeliveryError) -> None:
        super().__init__(str(cause))
        self.cause = cause


class SMTPTransport:
    """SMTP with pooled, reused connections, STARTTLS or implicit TLS, AUTH and PIPELINING.

    Thread-safe: a connection is checked out for one message at a time. See the module docstring
    for how the pool size relates to Celery's concurrency.
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
        max_messages: int = 0,
        idle_timeout: float = 60.0,
        pool_size: int = 2,
    ) -> None:
        if implicit_tls and starttls:
            raise ValueError("smtps:// is already TLS; drop ?starttls=true")
        self.host = host
        self.port = port
        self.implicit_tls = implicit_tls
        self.starttls = starttls
        self.username = username
        self._password = password
        self.timeout = timeout
        self.verify = verify
        self.max_messages = max_messages
        self.idle_timeout = idle_timeout
        self.pool_size = max(1, pool_size)
        self._idle: list[_Connection] = []
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(self.pool_size)
        self._pid = os.getpid()

    def __repr__(self) -> str:
        scheme = "smtps" if self.implicit_tls else "smtp"
        user = f"{self.username}:***@" if self.username else ""
        return f"<SMTPTransport {scheme}://{user}{self.host}:{self.port}>"

    @property
    def where(self) -> str:
        """``host:port`` for messages (never credentials)."""
        return f"{self.host}:{self.port}"

    # --- sending --------------------------------------------------------------------------

    def send(self, sender: str, recipient: str, message: bytes, *, crlf_ok: bool = False) -> str:
        """Send over a pooled connection; reconnect once if a reused one had gone stale."""
        self._check_pid()
        # Checking line ends scans a ~20 kB digest three times (~40 µs): skip it when the
        # caller built the message with CRLF itself.
        data = dot_stuff(message if crlf_ok else crlf(message))
        if not self._slots.acquire(timeout=self.timeout):
            raise TemporaryFailure(
                f"all {self.pool_size} SMTP connections to {self.where} stayed busy for "
                f"{self.timeout:g}s (NEWSLETTER_SMTP_POOL_SIZE)"
            )
        try:
            conn, reused = self._checkout()
            try:
                return self._transaction(conn, sender, recipient, data, len(message), reused)
            except _Retry as retry:
                log.info("SMTP connection to %s went stale (%s); reconnecting", self.where, retry)
            conn = self._open()
            try:
                return self._transaction(conn, sender, recipient, data, len(message), False)
            except _Retry as again:  # pragma: no cover - fresh connections never retry
                raise again.cause from None
        finally:
            self._slots.release()

    def _transaction(
        self,
        conn: _Connection,
        sender: str,
        recipient: str,
        data: bytes,
        size: int,
        reused: bool,
    ) -> str:
        """MAIL, RCPT, DATA, content; pipelined when the server allows. Raises on failure.

        Every path either returns the connection to the pool or closes it. Before the content is
        sent nothing can have been delivered, so a reused connection found dead is worth one
        retry (:class:`_Retry`); after it, the outcome is unknown and we say so.
        """
        smtp = conn.smtp
        try:
            mail_cmd, rcpt_cmd = self._commands(conn, sender, recipient, data, size)
        except DeliveryError:
            self._checkin(conn)
            raise
        try:
            if conn.pipelining:
                smtp.send(mail_cmd + rcpt_cmd + b"DATA\r\n")
                mail = smtp.getreply()
                rcpt = smtp.getreply() if mail[0] != 421 else mail
                data_reply = smtp.getreply() if rcpt[0] != 421 else rcpt
            else:
                smtp.send(mail_cmd)
                mail = smtp.getreply()
                rcpt = data_reply = (503, b"not sent")
                if mail[0] == 250:
                    smtp.send(rcpt_cmd)
                    rcpt = smtp.getreply()
                    if rcpt[0] in (250, 251):
                        smtp.send(b"DATA\r\n")
                        data_reply = smtp.getreply()
        except (OSError, smtplib.SMTPException) as exc:
            conn.close()
            failure = self._wire_failure("before sending the message", exc)
            # A stale connection fails at once; a stalled server would only stall again.
            if reused and not _timed_out(exc):
                raise _Retry(failure) from exc
            raise failure from exc
        self._check_envelope_replies(conn, mail, rcpt, data_reply, reused)
        return self._send_content(conn, smtp, data)

    def _check_envelope_replies(
        self,
        conn: _Connection,
        mail: tuple[int, bytes],
        rcpt: tuple[int, bytes],
        data_reply: tuple[int, bytes],
        reused: bool,
    ) -> None:
        """Raise unless MAIL and RCPT were accepted and DATA invited the content (354)."""
        if mail[0] == 421 or rcpt[0] == 421 or data_reply[0] == 421:
            conn.close()
            first = next(r for r in (mail, rcpt, data_reply) if r[0] == 421)
            failure = TemporaryFailure(reply_text(*first), 421)
            if reused and mail[0] == 421:  # typically an idle timeout we had not noticed
                raise _Retry(failure)
            raise failure
        if mail[0] != 250 or rcpt[0] not in (250, 251) or data_reply[0] != 354:
            self._abort(conn, data_reply[0] == 354)
            if mail[0] != 250:
                raise failure_for(*mail, recipient_stage=False)
            if rcpt[0] not in (250, 251):
                raise failure_for(*rcpt)
            raise failure_for(*data_reply)

    def _send_content(self, conn: _Connection, smtp: smtplib.SMTP, data: bytes) -> str:
        """Send the message; return the final reply (``smtp`` is ``conn.smtp``, looked up once)."""
        try:
            smtp.send(data)
            code, text = smtp.getreply()
        except (OSError, smtplib.SMTPException) as exc:
            conn.close()
            raise self._wire_failure(
                "after sending the message (it may or may not have been accepted)", exc
            ) from exc
        if code == 421:
            conn.close()
            raise failure_for(code, text)
        # After the final dot the server has closed the transaction either way: no RSET needed.
        conn.messages += 1
        self._checkin(conn)
        if code != 250:
            raise failure_for(code, text)
        return reply_text(code, text)

    def _commands(
        self, conn: _Connection, sender: str, recipient: str, data: bytes, size: int
    ) -> tuple[bytes, bytes]:
        """The MAIL and RCPT command lines, with SIZE/BODY/SMTPUTF8 parameters as offered."""
        _check_address(sender, "sender", TransportConfigError)
        _check_address(recipient, "recipient", PermanentFailure)
        params = f" SIZE={size}" if conn.size else ""
        if not data.isascii() and conn.eightbit:
            params += " BODY=8BITMIME"
        if not (sender.isascii() and recipient.isascii()):
            if not conn.smtputf8:
                if not sender.isascii():
                    raise TransportConfigError(
                        f"the sender {sender!r} is not ASCII and {self.where} lacks SMTPUTF8"
                    )
                raise PermanentFailure(
                    f"cannot deliver to a non-ASCII address: {self.where} lacks SMTPUTF8"
                )
            params += " SMTPUTF8"
        mail = f"MAIL FROM:<{sender}>{params}\r\n".encode()
        rcpt = f"RCPT TO:<{recipient}>\r\n".encode()
        return mail, rcpt

    def _abort(self, conn: _Connection, data_accepted: bool) -> None:
        """Leave a failed transaction clean: finish an accepted DATA empty, then RSET.

        If that fails too, the connection is dropped, so the next message starts afresh.
        """
        try:
            if data_accepted:  # RFC 2920: the server took DATA although RCPT failed
                conn.smtp.send(b".\r\n")
                conn.smtp.getreply()
            conn.smtp.send(b"RSET\r\n")
            if conn.smtp.getreply()[0] == 250:
                self._checkin(conn)
                return
        except (OSError, smtplib.SMTPException):
            pass
        conn.close()

    def _wire_failure(self, when: str, exc: BaseException) -> TemporaryFailure:
        """A TemporaryFailure (no code) describing a dropped, reset or stalled connection."""
        if _timed_out(exc):
            what = f"no answer from {self.where} within {self.timeout:g}s"
        else:
            what = f"connection to {self.where} lost"
        return TemporaryFailure(f"SMTP {what} {when}: {exc or type(exc).__name__}")

    # --- the pool -------------------------------------------------------------------------

    def _checkout(self) -> tuple[_Connection, bool]:
        """The most recently used live idle connection, or a new one; and whether it is reused."""
        now = time.monotonic()
        stale: list[_Connection] = []
        conn: _Connection | None = None
        with self._lock:
            while self._idle:
                candidate = self._idle.pop()
                if now - candidate.last_used > self.idle_timeout:
                    stale.append(candidate)
                else:
                    conn = candidate
                    break
        for old in stale:
            old.quit()
        if conn is not None:
            return conn, True
        return self._open(), False

    def _checkin(self, conn: _Connection) -> None:
        """Return a healthy connection to the pool (or retire it after max_messages)."""
        if self.max_messages and conn.messages >= self.max_messages:
            conn.quit()
            return
        conn.last_used = time.monotonic()
        with self._lock:
            self._idle.append(conn)

    def _open(self) -> _Connection:
        """Connect, say EHLO, STARTTLS and AUTH as configured."""
        smtp: smtplib.SMTP | None = None
        try:
            if self.implicit_tls:
                smtp = smtplib.SMTP_SSL(
                    self.host, self.port, timeout=self.timeout, context=self._tls_context()
                )
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            if smtp.sock is not None:
                with contextlib.suppress(OSError):
                    smtp.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            smtp.ehlo_or_helo_if_needed()
            if self.starttls:
                if not smtp.has_extn("starttls"):
                    raise TransportConfigError(
                        f"{self.where} does not offer STARTTLS; drop ?starttls=true or use smtps://"
                    )
                smtp.starttls(context=self._tls_context())
                smtp.ehlo()
            if self.username:
                self._login(smtp)
            log.debug("SMTP connection to %s opened", self.where)
            return _Connection(smtp)
        except DeliveryError:
            _close_quietly(smtp)
            raise
        except ssl.SSLCertVerificationError as exc:
            _close_quietly(smtp)
            raise TransportConfigError(
                f"TLS certificate of {self.where} not trusted ({exc.verify_message}); for a "
                "self-signed development server add ?verify=false"
            ) from exc
        except smtplib.SMTPResponseException as exc:
            _close_quietly(smtp)
            raise TemporaryFailure(
                f"SMTP server {self.where} refused the session: "
                f"{reply_text(exc.smtp_code, exc.smtp_error)}",
                exc.smtp_code,
            ) from exc
        except (OSError, smtplib.SMTPException) as exc:
            _close_quietly(smtp)
            reason: object = exc or type(exc).__name__
            if _timed_out(exc):
                reason = f"no answer within {self.timeout:g}s"
            raise TemporaryFailure(f"cannot reach SMTP server {self.where}: {reason}") from exc

    def _login(self, smtp: smtplib.SMTP) -> None:
        """AUTH; a refusal is our configuration's fault, never the reader's."""
        if not smtp.has_extn("auth"):
            hint = "" if (self.starttls or self.implicit_tls) else " (add ?starttls=true?)"
            raise TransportConfigError(
                f"{self.where} does not offer AUTH but the SMTP URL has credentials{hint}"
            )
        try:
            smtp.login(self.username or "", self._password or "")
        except smtplib.SMTPAuthenticationError as exc:
            with contextlib.suppress(OSError, smtplib.SMTPException):
                smtp.quit()  # the session is fine; leave politely
            raise TransportConfigError(
                f"SMTP login as {self.username!r} to {self.where} refused "
                f"({reply_text(exc.smtp_code, exc.smtp_error)}); check NEWSLETTER_SMTP_URL",
                exc.smtp_code,
            ) from exc

    def _tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _check_pid(self) -> None:
        """After a fork, forget the parent's connections (their sockets are shared)."""
        if self._pid != os.getpid():
            with self._lock:
                self._idle = []
            self._slots = threading.BoundedSemaphore(self.pool_size)
            self._pid = os.getpid()

    def close(self) -> None:
        """Say QUIT on every idle connection and close it."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.quit()


def _check_address(address: str, role: str, error: Callable[[str], DeliveryError]) -> None:
    """Refuse addresses that could smuggle SMTP commands or break the envelope syntax."""
    if not address and role == "sender":
        return  # the null reverse-path <> is legal
    if any(c in address for c in "\r\n<> \t") or "@" not in address:
        raise error(f"invalid {role} address for SMTP: {address!r}")


def _timed_out(exc: BaseException) -> bool:
    """True when ``exc`` is, or was raised while handling, a socket timeout.

    smtplib turns a read timeout into SMTPServerDisconnected("... timed out"), keeping the
    TimeoutError only as the exception's context.
    """
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, TimeoutError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _close_quietly(smtp: smtplib.SMTP | None) -> None:
    if smtp is not None:
        with contextlib.suppress(OSError):
            smtp.close()


def _flag(query: dict[str, str], name: str, default: bool) -> bool:
    value = query.get(name)
    if value is None:
        return default
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"SMTP URL option {name}={value!r}: expected true or false")


def transport_from_url(url: str, *, timeout: float = 30.0, pool_size: int = 2) -> Transport:
    """Build the transport a URL names (``smtp://user:pass@host:port?starttls=true``)."""
    parts = urlsplit(url)
    if parts.scheme == "capture":
        return CaptureTransport(Path(unquote(parts.netloc + parts.path)))
    if parts.scheme not in {"smtp", "smtps"}:
        raise ValueError(f"unsupported mail transport {parts.scheme!r}")
    query = {k.lower(): v[-1].strip().lower() for k, v in parse_qs(parts.query).items()}
    unknown = set(query) - _OPTIONS
    if unknown:
        raise ValueError(
            f"unknown SMTP URL option(s) {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(_OPTIONS))}"
        )
    implicit = parts.scheme == "smtps"
    try:
        port = parts.port
        return SMTPTransport(
            parts.hostname or "localhost",
            port or (465 if implicit else 25),
            implicit_tls=implicit,
            starttls=_flag(query, "starttls", False),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            timeout=float(query.get("timeout", timeout)),
            verify=_flag(query, "verify", True),
            max_messages=int(query.get("max_messages", 0)),
            idle_timeout=float(query.get("idle_timeout", 60.0)),
            pool_size=pool_size,
        )
    except ValueError as exc:
        raise ValueError(f"bad SMTP URL: {exc}") from None


_transports: dict[tuple[str, float, int], Transport] = {}
_transports_lock = threading.Lock()


def get_transport(settings: Settings) -> Transport:
    """This process's transport for the configured URL; its connections outlive tasks."""
    key = (settings.smtp_url, settings.smtp_timeout, settings.smtp_pool_size)
    transport = _transports.get(key)
    if transport is None:
        with _transports_lock:
            transport = _transports.get(key)
            if transport is None:
                transport = _transports[key] = transport_from_url(
                    settings.smtp_url,
                    timeout=settings.smtp_timeout,
                    pool_size=settings.smtp_pool_size,
                )
    return transport


def close_transports() -> None:
    """QUIT and close this process's idle SMTP connections (e.g. at worker shutdown)."""
    with _transports_lock:
        transports = list(_transports.values())
    for transport in transports:
        transport.close()


def _forget_after_fork() -> None:
    """A forked child must not speak on its parent's sockets: start with no transports."""
    global _transports_lock
    _transports.clear()
    _transports_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)


def hostname() -> str:
    """This machine's name, for Message-IDs when no domain is configured."""
    return socket.getfqdn()
