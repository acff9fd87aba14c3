"""SMTP servers that misbehave on purpose: count connections, drop them, stall, offer TLS/AUTH.

``CountingSink`` is the real aiosmtpd server of tests/support/smtp.py with a connection counter,
optional STARTTLS/implicit TLS/AUTH and a "hang up after each message" switch. ``ScriptedServer``
is a small raw-socket server for faults aiosmtpd cannot produce: stalling, closing in the middle of
DATA, and PIPELINING (which aiosmtpd does not offer).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.support.smtp import SinkHandler, SMTPSink, free_port


def self_signed_cert(folder: Path) -> tuple[Path, Path]:
    """A throwaway certificate for 127.0.0.1/localhost; returns (cert.pem, key.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def server_tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server-side TLS context for the certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


@dataclass
class CountingHandler(SinkHandler):
    """SinkHandler that can hang up right after accepting each message."""

    hang_up_after_message: bool = False

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        if self.hang_up_after_message and server.transport is not None:
            # Close just after the 250 went out, like a server's idle timeout would later.
            asyncio.get_running_loop().call_later(0.05, server.transport.close)
        return reply


class _Authenticator:
    """Accepts one user name and password."""

    def __init__(self, username: str, password: str) -> None:
        self.username = username
        self.password = password

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        ok = (
            isinstance(data, LoginPassword)
            and data.login.decode() == self.username
            and data.password.decode() == self.password
        )
        return AuthResult(success=ok, handled=False)


class _CountingController(Controller):
    def __init__(self, owner: CountingSink, *args: Any, **kwargs: Any) -> None:
        self.owner = owner
        super().__init__(*args, **kwargs)

    def factory(self) -> SMTP:
        owner = self.owner

        class CountingSMTP(SMTP):
            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                # Called again after STARTTLS for the same TCP connection: count peers.
                with owner.handler.lock:
                    owner.peers.add(transport.get_extra_info("peername"))
                super().connection_made(transport)

        return CountingSMTP(self.handler, **self.SMTP_kwargs)


class CountingSink(SMTPSink):
    """aiosmtpd that counts connections; optionally STARTTLS, implicit TLS and AUTH."""

    def __init__(
        self,
        *,
        starttls_context: ssl.SSLContext | None = None,
        implicit_tls_context: ssl.SSLContext | None = None,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        self.handler = CountingHandler()
        self.port = free_port()
        self.peers: set[object] = set()
        kwargs: dict[str, Any] = {}
        if starttls_context is not None:
            kwargs.update(tls_context=starttls_context, require_starttls=True)
        if implicit_tls_context is not None:
            kwargs["ssl_context"] = implicit_tls_context
        if credentials is not None:
            kwargs.update(
                authenticator=_Authenticator(*credentials),
                auth_required=True,
                auth_require_tls=True,
            )
        self.controller = _CountingController(
            self, self.handler, hostname="127.0.0.1", port=self.port, decode_data=False, **kwargs
        )

    def start(self) -> CountingSink:
        """Start serving; the controller's own readiness probe does not count as a connection."""
        self.controller.start()
        with self.handler.lock:
            self.peers.clear()
        return self

    @property
    def connections(self) -> int:
        """TCP connections clients opened since :meth:`start`."""
        with self.handler.lock:
            return len(self.peers)


@dataclass
class ScriptedServer:
    """A raw-socket SMTP server with scripted faults.

    ``stall_at``: "greeting" (never greet), "MAIL" (never answer MAIL) or "" (no stall).
    ``close_in_data``: read the whole message, then hang up without a reply (ambiguous outcome).
    ``close_after_messages``: hang up silently after that many accepted messages (0 = never).
    ``pipelining``: offer PIPELINING. ``reply_for``: forced RCPT replies per recipient.
    """

    stall_at: str = ""
    close_in_data: bool = False
    close_after_messages: int = 0
    pipelining: bool = True
    reply_for: dict[str, str] = field(default_factory=dict)
    messages: list[bytes] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    connections: int = 0
    port: int = 0

    def __post_init__(self) -> None:
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._open: list[socket.socket] = []

    @property
    def url(self) -> str:
        """SMTP URL of this server."""
        return f"smtp://127.0.0.1:{self.port}"

    def start(self) -> ScriptedServer:
        """Serve in a background thread."""
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop and hang up on everyone."""
        self._stop.set()
        self._listener.close()
        with self._lock:
            for conn in self._open:
                conn.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._open.append(conn)
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn: socket.socket) -> None:
        try:
            self._converse(conn)
        except OSError:
            pass
        finally:
            conn.close()

    def _converse(self, conn: socket.socket) -> None:
        if self.stall_at == "greeting":
            self._stop.wait()
            return
        conn.sendall(b"220 scripted ESMTP\r\n")
        reader = conn.makefile("rb")
        accepted = 0
        rcpt_ok = False
        while True:
            line = reader.readline()
            if not line:
                return
            command = line.decode("utf-8", "replace").strip()
            verb = command[:4].upper()
            with self._lock:
                self.commands.append(command)
            if verb == "EHLO":
                ext = "250-PIPELINING\r\n" if self.pipelining else ""
                conn.sendall(f"250-scripted\r\n{ext}250-SIZE 1000000\r\n250 8BITMIME\r\n".encode())
            elif verb == "MAIL":
                if self.stall_at == "MAIL":
                    self._stop.wait()
                    return
                rcpt_ok = False
                conn.sendall(b"250 2.1.0 Ok\r\n")
            elif verb == "RCPT":
                address = command.split(":", 1)[1].strip().strip("<>").lower()
                forced = self.reply_for.get(address)
                rcpt_ok = forced is None
                conn.sendall(((forced or "250 2.1.5 Ok") + "\r\n").encode())
            elif verb == "DATA":
                if not rcpt_ok:
                    conn.sendall(b"554 5.5.1 No valid recipients\r\n")
                    continue
                conn.sendall(b"354 go ahead\r\n")
                body = []
                while True:
                    data_line = reader.readline()
                    if not data_line:
                        return
                    if data_line == b".\r\n":
                        break
                    body.append(data_line[1:] if data_line.startswith(b"..") else data_line)
                if self.close_in_data:
                    return
                with self._lock:
                    self.messages.append(b"".join(body))
                accepted += 1
                conn.sendall(b"250 2.0.0 queued\r\n")
                if self.close_after_messages and accepted >= self.close_after_messages:
                    return
            elif verb in ("RSET", "NOOP"):
                conn.sendall(b"250 Ok\r\n")
            elif verb == "QUIT":
                conn.sendall(b"221 Bye\r\n")
                return
            else:
                conn.sendall(b"502 unknown\r\n")
