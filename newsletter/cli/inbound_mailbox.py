"""``newsletter inbound serve`` and ``inbound poll``: a bounce mailbox served or polled.

``serve`` is an SMTP or LMTP server that processes what it receives
(:mod:`newsletter.inbound.receiver`); ``poll`` reads a hosted mailbox over IMAP or POP3
(:mod:`newsletter.inbound.poller`). Both are added to the ``inbound`` group by
:mod:`newsletter.cli.inbound`.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from types import FrameType

import click

from newsletter.cli.common import EX_TEMPFAIL, fail, settings
from newsletter.inbound.poller import MailboxError, parse_url, poll
from newsletter.inbound.processing import Result
from newsletter.inbound.receiver import BounceHandler, SocketMailbox, TcpMailbox, own_domains
from newsletter.settings import Settings
from newsletter.store.db import session_scope


def _listen(_ctx: click.Context, _param: click.Parameter, value: str) -> tuple[str, int]:
    """HOST:PORT (``[::1]:2525`` for IPv6) as a pair, or a usage error."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(f"expected HOST:PORT, e.g. 127.0.0.1:2525, not {value!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


@click.command("serve")
@click.option(
    "--listen",
    default="127.0.0.1:2525",
    show_default=True,
    callback=_listen,
    metavar="HOST:PORT",
    help="Address to listen on (0.0.0.0:25 to be the bounce domain's MX).",
)
@click.option(
    "--socket",
    "socket_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Listen on this Unix socket instead (Postfix: lmtp:unix:/path).",
)
@click.option("--lmtp", is_flag=True, help="Speak LMTP (RFC 2033), for an MTA that hands mail on.")
@click.option(
    "--domain",
    "domains",
    multiple=True,
    metavar="DOMAIN",
    help="Also take mail for this domain (repeatable). The bounce address's domain and the "
    "mailto unsubscribe address's are always taken.",
)
@click.option("--hostname", default=None, help="The name the server greets with.")
def serve_command(
    listen: tuple[str, int],
    socket_path: Path | None,
    lmtp: bool,
    domains: tuple[str, ...],
    hostname: str | None,
) -> None:
    """Receive bounces, complaints and mailto unsubscribes over SMTP or LMTP and process them.

    Each message is processed as `inbound process` would, once per recipient, and the reply
    says how it went: 250 processed, 451 when the database is away (the MTA retries: nothing is
    lost), 5xx when it is refused for a limit or is not mail. Mail for other domains is refused
    at RCPT. Prints one line per message; stops on SIGINT or SIGTERM.
    """
    config = settings()
    # Never empty: the unsubscribe address falls back to the sender's domain.
    taken = own_domains(config, domains)
    handler = BounceHandler(
        config,
        lambda: session_scope(config.database_url),
        taken,
        lmtp=lmtp,
        report=lambda recipient, reply: click.echo(f"{recipient}: {reply}"),
    )
    kind = "LMTP" if lmtp else "SMTP"
    server: TcpMailbox | SocketMailbox
    if socket_path is not None:
        server, where = SocketMailbox(handler, socket_path, hostname), str(socket_path)
    else:
        host, port = listen
        server, where = TcpMailbox(handler, host, port, hostname), f"{host}:{port}"
    try:
        server.start()
    except (OSError, RuntimeError) as exc:
        fail(f"cannot listen on {where}: {exc}")
    click.echo(f"{kind} bounce mailbox on {where} for {', '.join(sorted(taken))}", err=True)
    stop = _stop_on_signal()
    while not stop.wait(1.0):
        pass
    server.stop()


def _stop_on_signal() -> threading.Event:
    """An event set by SIGINT or SIGTERM (a supervisor stopping us)."""
    stop = threading.Event()

    def handle(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)
    return stop


@click.command("poll")
@click.argument("url", required=False, metavar="[URL]")
@click.option(
    "--every",
    type=click.IntRange(min=10),
    default=None,
    metavar="SECONDS",
    help="Poll again every SECONDS until stopped (default: poll once and exit).",
)
@click.option(
    "--keep",
    is_flag=True,
    help="IMAP only: flag processed messages as read and leave them, instead of deleting them.",
)
def poll_command(url: str | None, every: int | None, keep: bool) -> None:
    """Process the mail waiting in a bounce mailbox over IMAP or POP3, then remove it.

    URL (or NEWSLETTER_INBOUND_MAILBOX_URL) is imaps://USER:PASSWORD@HOST/FOLDER, imap://,
    pop3s:// or pop3://. Each message is processed as `inbound process` would and only then
    deleted, so nothing is lost; prints one line per message. Exit status of a single poll:
    0 done, 1 the mailbox could not be read, 75 the database was away (the rest wait).
    """
    config = settings()
    where = (url or config.inbound_mailbox_url).strip()
    if not where:
        fail("no mailbox: pass URL or set NEWSLETTER_INBOUND_MAILBOX_URL", code=2)
    try:
        safe = parse_url(where).safe
    except MailboxError as exc:
        fail(str(exc), code=2)
    stop = _stop_on_signal() if every else None
    while True:
        status = _poll_once(config, where, safe, keep)
        if stop is None:
            sys.exit(status)
        if stop.wait(every):
            return


def _poll_once(config: Settings, url: str, safe: str, keep: bool) -> int:
    """One round, reported line by line; its exit status."""
    try:
        done = poll(config, lambda: session_scope(config.database_url), url, keep=keep)
    except MailboxError as exc:
        click.echo(f"Error: {exc}", err=True)
        return 1
    for number, outcome in enumerate(done.outcomes, start=1):
        click.echo(f"{safe}#{number}: {outcome.line()}", err=outcome.result == Result.REFUSED)
    if done.deferred:
        click.echo(
            f"{safe}: deferred: the database could not be reached; {done.left} message(s) "
            "wait for the next poll",
            err=True,
        )
        return EX_TEMPFAIL
    if done.left:
        click.echo(f"{safe}: {done.left} more message(s) wait for the next poll", err=True)
    return 0
