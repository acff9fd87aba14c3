"""``newsletter inbound process``: act on bounces, spam complaints and mailto unsubscribes.

Reads .eml files, Maildir folders (or plain folders of .eml files) and mbox files, or ONE
message from stdin so an MTA can pipe mail into it. Exit status: 0 when every message was
processed, 1 when any could not be read or parsed (the rest are still processed), 65
(EX_DATAERR, a permanent error to an MTA) when any was refused for a limit of
newsletter/inbound/limits.py (its reason on stderr, nothing stored), 75 (EX_TEMPFAIL, "try again
later" to an MTA) when the database could not be reached; the first of 75, 65, 1 that applies.

``newsletter inbound serve`` (newsletter/cli/inbound_mailbox.py) takes the same mail over SMTP or
LMTP instead.
"""

from __future__ import annotations

import mailbox
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click
from flask.cli import AppGroup
from sqlalchemy.exc import OperationalError

from newsletter.cli.common import EX_DATAERR, EX_TEMPFAIL, session, settings
from newsletter.cli.inbound_mailbox import poll_command, serve_command
from newsletter.inbound.limits import (
    MAX_DEPTH,
    MAX_HEADER_BYTES,
    MAX_PARAM_FIELD,
    MAX_PARTS,
    MAX_RECIPIENTS,
)
from newsletter.inbound.processing import Result, process_message

EXIT_STATUS = f"""\b
Exit status, the first that applies:
  {EX_TEMPFAIL}  the database could not be reached (EX_TEMPFAIL: an MTA retries later)
  {EX_DATAERR}  a message was refused unread for a limit: larger than
      NEWSLETTER_INBOUND_MAX_BYTES, MIME parts nested deeper than {MAX_DEPTH}, more than
      {MAX_PARTS} parts, a header section over {MAX_HEADER_BYTES // 1024} KiB, a Content-Type
      (or similar) field over {MAX_PARAM_FIELD} characters, more than {MAX_RECIPIENTS}
      recipients named; the reason is on stderr, nothing was stored (EX_DATAERR: an
      MTA bounces the message)
  1   a message could not be read or is not mail
  0   every message was processed"""


@dataclass(frozen=True)
class Source:
    """One message to process, or why it could not be read."""

    label: str
    raw: bytes = b""
    error: str = ""


@click.group("inbound", cls=AppGroup)
def inbound_group() -> None:
    """Inbound mail: bounces, spam complaints, mailto unsubscribe requests."""


@inbound_group.command("process", epilog=EXIT_STATUS)
@click.argument("paths", nargs=-1, metavar="[PATH ...]")
@click.option(
    "--recipient",
    default="",
    envvar="ORIGINAL_RECIPIENT",
    show_envvar=True,
    metavar="ADDRESS",
    help="Envelope recipient the MTA delivered to (identifies VERP bounces). Postfix sets "
    "ORIGINAL_RECIPIENT for a command in aliases; pipe(8) can pass ${original_recipient}.",
)
def process_command(paths: tuple[str, ...], recipient: str) -> None:
    """Recognise each message and act on it; print one line per message.

    Each PATH is an .eml file, a Maildir folder (or a folder of .eml files) or an mbox file.
    With `-` or no PATH, ONE message is read from stdin (for an MTA's pipe). Unsubscribe requests
    are honoured only with a valid signed token; bounces and complaints only with evidence of a
    mail we sent (signed VERP address, our quoted Message-ID, our token), else "unmatched".
    Processing the same message again changes nothing.
    """
    config = settings()
    limit = config.inbound_max_bytes
    unreadable = deferred = refused = 0
    for source in _sources(paths or ("-",), limit):
        if source.error:
            click.echo(f"{source.label}: invalid: {source.error}")
            unreadable += 1
            continue
        try:
            with session() as db:
                outcome = process_message(db, config, source.raw, recipient=recipient.strip())
        except OperationalError as exc:
            first = str(exc.orig or exc).strip().splitlines()[0][:200]
            click.echo(f"{source.label}: deferred: database problem ({first}); try again later")
            deferred += 1
            continue
        except Exception as exc:  # one bad message must not stop the rest
            click.echo(f"{source.label}: error: could not process ({type(exc).__name__})")
            unreadable += 1
            continue
        if outcome.result == Result.REFUSED:
            # On stderr, which the MTA quotes in the bounce it sends back.
            click.echo(f"{source.label}: {outcome.line()}", err=True)
            refused += 1
            continue
        click.echo(f"{source.label}: {outcome.line()}")
        if not outcome.parsed:
            unreadable += 1
    if deferred:
        sys.exit(EX_TEMPFAIL)
    if refused:
        sys.exit(EX_DATAERR)
    if unreadable:
        sys.exit(1)


def _sources(paths: tuple[str, ...], limit: int) -> Iterator[Source]:
    """Every message in the given paths, in order, each read up to ``limit`` + 1 bytes."""
    stdin_done = False
    for name in paths:
        if name == "-":
            if not stdin_done:
                stdin_done = True
                yield Source("stdin", sys.stdin.buffer.read(limit + 1))
            continue
        path = Path(name)
        if path.is_dir():
            yield from _folder(path, limit)
        elif path.is_file():
            yield from _file(path, limit)
        else:
            yield Source(name, error="no such file or folder")


def _folder(path: Path, limit: int) -> Iterator[Source]:
    """A Maildir (messages in new/ and cur/) or a plain folder of message files."""
    if (path / "cur").is_dir() and (path / "new").is_dir():
        files = sorted(
            f for sub in ("new", "cur") for f in (path / sub).iterdir() if _is_message_file(f)
        )
    else:
        files = sorted(f for f in path.iterdir() if _is_message_file(f))
    if not files:
        yield Source(str(path), error="no messages in this folder")
    for file in files:
        yield _read(file, limit)


def _is_message_file(path: Path) -> bool:
    """Regular, non-hidden files (Maildir writers keep work in progress in tmp/ and dotfiles)."""
    return path.is_file() and not path.name.startswith(".")


def _file(path: Path, limit: int) -> Iterator[Source]:
    """One message, or every message of an mbox (a file that starts with a "From " line)."""
    try:
        with path.open("rb") as handle:
            head = handle.read(5)
    except OSError as exc:
        yield Source(str(path), error=f"cannot read: {exc.strerror or exc}")
        return
    if head != b"From ":
        yield _read(path, limit)
        return
    try:
        box = mailbox.mbox(path, create=False)
        keys = list(box.keys())
    except (OSError, mailbox.Error) as exc:
        yield Source(str(path), error=f"cannot read as mbox: {exc}")
        return
    try:
        for number, key in enumerate(keys, start=1):
            with box.get_file(key) as handle:
                yield Source(f"{path}#{number}", handle.read(limit + 1))
    finally:
        box.close()


def _read(path: Path, limit: int) -> Source:
    """One message file, read up to ``limit`` + 1 bytes (the rest is never loaded)."""
    try:
        with path.open("rb") as handle:
            return Source(str(path), handle.read(limit + 1))
    except OSError as exc:
        return Source(str(path), error=f"cannot read: {exc.strerror or exc}")


inbound_group.add_command(serve_command)
inbound_group.add_command(poll_command)
commands = [inbound_group]
