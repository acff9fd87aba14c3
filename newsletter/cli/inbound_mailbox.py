"""``newsletter inbound serve``: the bounce mailbox, an SMTP or LMTP server that processes mail.

Added to the ``inbound`` group by :mod:`newsletter.cli.inbound`; the server itself is
:mod:`newsletter.inbound.receiver`.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType

import click

from newsletter.cli.common import fail, settings
from newsletter.inbound.receiver import BounceHandler, SocketMailbox, TcpMailbox, own_domains
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
    _wait_for_signal()
    server.stop()


def _wait_for_signal() -> None:
    """Block until SIGINT or SIGTERM (a supervisor stopping us)."""
    stop = threading.Event()

    def handle(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)
    while not stop.wait(1.0):
        pass
