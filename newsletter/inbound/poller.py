"""Polling a bounce mailbox over IMAP or POP3: each message processed, then removed.

For a bounce address whose mail lands in a hosted mailbox (no MTA of ours to pipe from, no MX to
point at ``newsletter inbound serve``). A mailbox URL names the protocol, the account and, for
IMAP, the folder: ``imaps://user:password@imap.example.com/Bounces`` (``imap://``, ``pop3s://``,
``pop3://``; the password percent-encoded). Each message is processed like ``inbound process``
would, in its own transaction, and only then deleted (or, over IMAP with ``keep``, flagged
``\\Seen`` and left), so a crash in between processes it again, which changes nothing. When the
database is away the round stops, leaving that message and the rest for the next one.
"""

from __future__ import annotations

import imaplib
import poplib
import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import quote, unquote, urlsplit

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from newsletter.inbound.processing import Outcome, Result, process_message
from newsletter.settings import Settings

SessionFactory = Callable[[], AbstractContextManager[Session]]

DEFAULT_PORTS = {"imap": 143, "imaps": 993, "pop3": 110, "pop3s": 995}
# A round takes at most this many messages, so one poll is bounded; the rest wait for the next.
MAX_PER_ROUND = 500
_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")


class MailboxError(Exception):
    """The mailbox could not be reached, logged into or read; the message says which."""


@dataclass(frozen=True)
class MailboxUrl:
    """Where the bounce mailbox is, parsed from its URL."""

    scheme: str
    host: str
    port: int
    user: str
    password: str
    folder: str

    @property
    def safe(self) -> str:
        """The URL without its password, for logs and messages."""
        path = f"/{self.folder}" if self.scheme.startswith("imap") else ""
        return f"{self.scheme}://{quote(self.user, safe='')}@{self.host}:{self.port}{path}"


def parse_url(url: str) -> MailboxUrl:
    """Read an ``imap[s]://`` or ``pop3[s]://`` URL; MailboxError saying what is missing."""
    parts = urlsplit(url.strip())
    if parts.scheme not in DEFAULT_PORTS:
        raise MailboxError(
            "a mailbox URL starts with imaps://, imap://, pop3s:// or pop3://, "
            "e.g. imaps://bounces%40example.com:PASSWORD@imap.example.com/INBOX"
        )
    if not parts.hostname or not parts.username or parts.password is None:
        raise MailboxError("a mailbox URL names the host, the user and the password")
    try:
        port = parts.port or DEFAULT_PORTS[parts.scheme]
    except ValueError:
        raise MailboxError("the port of the mailbox URL is not a number from 1 to 65535") from None
    folder = unquote(parts.path.lstrip("/")) or "INBOX"
    if parts.scheme.startswith("pop3") and folder != "INBOX":
        raise MailboxError("POP3 has one mailbox: a pop3:// URL names no folder")
    return MailboxUrl(
        parts.scheme,
        parts.hostname,
        port,
        unquote(parts.username),
        unquote(parts.password),
        folder,
    )


@dataclass
class Round:
    """What one poll did: each message's outcome, and whether it stopped for the database."""

    outcomes: list[Outcome] = field(default_factory=list)
    deferred: bool = False
    left: int = 0  # messages not looked at: past MAX_PER_ROUND, or after a deferral


class _Mailbox(Protocol):
    """What a round needs of a mailbox, over either protocol."""

    def messages(self) -> list[tuple[bytes, int]]:
        """(message handle, size) of every message to process, oldest first."""

    def fetch(self, handle: bytes) -> bytes:
        """One message's raw bytes."""

    def done(self, handle: bytes) -> None:
        """Remove (or, with keep, mark) a processed message."""


def poll(
    settings: Settings,
    sessions: SessionFactory,
    url: str,
    *,
    keep: bool = False,
    timeout: float = 30.0,
) -> Round:
    """Process every waiting message in the mailbox once; MailboxError if it cannot be read."""
    where = parse_url(url)
    if keep and where.scheme.startswith("pop3"):
        raise MailboxError("POP3 cannot mark a message as read: --keep works with IMAP only")
    result = Round()
    try:
        with _open(where, keep, timeout) as mailbox:
            waiting = mailbox.messages()
            result.left = max(0, len(waiting) - MAX_PER_ROUND)
            for index, (handle, size) in enumerate(waiting[:MAX_PER_ROUND]):
                if size > settings.inbound_max_bytes:
                    # Not fetched at all: the size the server states is enough to refuse it.
                    outcome = Outcome(
                        Result.REFUSED,
                        f"larger than NEWSLETTER_INBOUND_MAX_BYTES ({size} bytes)",
                        limit="size",
                    )
                else:
                    try:
                        outcome = _process(settings, sessions, mailbox.fetch(handle))
                    except OperationalError:
                        result.deferred = True
                        result.left += len(waiting[:MAX_PER_ROUND]) - index
                        break
                mailbox.done(handle)
                result.outcomes.append(outcome)
    except (OSError, imaplib.IMAP4.error, poplib.error_proto) as exc:
        raise MailboxError(f"{where.safe}: {_reason(exc)}") from None
    return result


def _process(settings: Settings, sessions: SessionFactory, raw: bytes) -> Outcome:
    """One message in its own transaction (OperationalError passes: the caller defers)."""
    with sessions() as db:
        return process_message(db, settings, raw)


def _reason(exc: BaseException) -> str:
    """A one-line reason, never with the password (servers do not echo it; be sure)."""
    text = exc.args[0] if exc.args else exc
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return " ".join(str(text).split())[:300] or type(exc).__name__


@contextmanager
def _open(where: MailboxUrl, keep: bool, timeout: float) -> Iterator[_Mailbox]:
    """A logged-in mailbox over the URL's protocol, closed (and expunged) at the end."""
    if where.scheme.startswith("imap"):
        with _imap(where, keep, timeout) as box:
            yield box
    else:
        with _pop3(where, timeout) as pop:
            yield pop


@contextmanager
def _imap(where: MailboxUrl, keep: bool, timeout: float) -> Iterator[_Mailbox]:
    """An IMAP folder, selected read-write; deletions expunged when the round ends well."""
    client: imaplib.IMAP4
    if where.scheme == "imaps":
        client = imaplib.IMAP4_SSL(where.host, where.port, timeout=timeout)
    else:
        client = imaplib.IMAP4(where.host, where.port, timeout=timeout)
    try:
        client.login(where.user, where.password)
        status, _ = client.select(_quoted(where.folder))
        if status != "OK":
            raise MailboxError(f"{where.safe}: no folder {where.folder!r}")
        box = _ImapBox(client, keep)
        yield box
        if not keep:
            client.expunge()
        client.close()
    finally:
        with suppress(OSError, imaplib.IMAP4.error):  # already gone: nothing left to tidy
            client.logout()


def _quoted(folder: str) -> str:
    """A folder name as an IMAP quoted string."""
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass
class _ImapBox:
    """Messages of one IMAP folder, by UID (stable while we work, unlike sequence numbers)."""

    client: imaplib.IMAP4
    keep: bool

    def messages(self) -> list[tuple[bytes, int]]:
        """Unread messages with keep (read ones were processed), else every undeleted one."""
        criteria = "(UNSEEN UNDELETED)" if self.keep else "(UNDELETED)"
        _, found = self.client.uid("SEARCH", criteria)
        uids = found[0].split() if found and found[0] else []
        sizes: list[tuple[bytes, int]] = []
        for uid in uids:
            _, data = self.client.uid("FETCH", uid.decode(), "(RFC822.SIZE)")
            match = _SIZE.search(data[0] if data and isinstance(data[0], bytes) else b"")
            sizes.append((uid, int(match.group(1)) if match else 0))
        return sizes

    def fetch(self, handle: bytes) -> bytes:
        """The message, fetched with BODY.PEEK so fetching alone marks nothing read."""
        _, data = self.client.uid("FETCH", handle.decode(), "(BODY.PEEK[])")
        for item in data:
            if isinstance(item, tuple):
                return bytes(item[1])
        raise MailboxError(f"the server sent no body for message {handle.decode()}")

    def done(self, handle: bytes) -> None:
        """Flag it \\Seen (keep) or \\Deleted (expunged when the round ends)."""
        flag = r"(\Seen)" if self.keep else r"(\Deleted)"
        self.client.uid("STORE", handle.decode(), "+FLAGS", flag)


@contextmanager
def _pop3(where: MailboxUrl, timeout: float) -> Iterator[_Mailbox]:
    """A POP3 mailbox; deletions take effect at QUIT, which only a round that ends well sends."""
    client: poplib.POP3
    if where.scheme == "pop3s":
        client = poplib.POP3_SSL(where.host, where.port, timeout=timeout)
    else:
        client = poplib.POP3(where.host, where.port, timeout=timeout)
    try:
        client.user(where.user)
        client.pass_(where.password)
        yield _PopBox(client)
        client.quit()
    except BaseException:
        # No QUIT: the server rolls back this session's deletions, as RFC 1939 says.
        client.close()
        raise


@dataclass
class _PopBox:
    """Messages of a POP3 mailbox, by number (fixed for the session)."""

    client: poplib.POP3

    def messages(self) -> list[tuple[bytes, int]]:
        """Every message with the size the server gives for it."""
        _, listing, _ = self.client.list()
        pairs = [line.split() for line in listing]
        return [(number, int(size)) for number, size in pairs]

    def fetch(self, handle: bytes) -> bytes:
        """The message, its lines joined with CRLF as they came."""
        _, lines, _ = self.client.retr(int(handle))
        return b"\r\n".join(lines) + b"\r\n"

    def done(self, handle: bytes) -> None:
        """Mark it deleted (done at QUIT)."""
        self.client.dele(int(handle))
