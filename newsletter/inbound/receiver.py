"""The bounce mailbox: an SMTP or LMTP server (aiosmtpd) that processes each message it receives.

The alternative to piping from the MTA (``newsletter inbound process -``): point the bounce
domain's MX at ``newsletter inbound serve``, or hand it the mail from Postfix or Exim over LMTP.
Each message is processed once per envelope recipient (the VERP address is the recipient) in a
transaction of its own, and the reply tells the sending MTA how it went:

* 250 when processed, whatever it turned out to be (an unmatched report is recorded, and done);
* 451 when the database is away: the MTA keeps the message and tries again, so nothing is lost;
* 5xx when a limit of :mod:`newsletter.inbound.limits` refuses it or it is not mail at all: the
  MTA returns it (a bounce has a null sender, so that ends there rather than looping).

Only recipients at our own domains are accepted (the bounce address's, the mailto unsubscribe
address's, and any given), so the server is never a relay, and spam to other names is refused at
RCPT before a byte of it is read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from aiosmtpd.controller import Controller, UnixSocketController
from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, Envelope
from aiosmtpd.smtp import Session as SmtpSession
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from newsletter.inbound.processing import Outcome, Result, process_message
from newsletter.settings import Settings

SessionFactory = Callable[[], AbstractContextManager[Session]]

# Enhanced status codes (RFC 3463) the sending MTA logs with our reply.
PROCESSED = "250 2.0.0 Processed: {line}"
TRY_LATER = "451 4.3.0 The bounce processor cannot reach its database; try again later"
TOO_BIG = "552 5.3.4 Message refused: {reason}"
REFUSED = "554 5.6.0 Message refused: {reason}"
NOT_MAIL = "554 5.6.0 Not a mail message"
FAILED = "451 4.3.0 The message could not be processed; try again later"
TOO_MANY = "452 4.5.3 Too many recipients for one message; send the rest in another"
UNKNOWN_USER = "550 5.1.1 No such mailbox here: this server takes bounces for {domains} only"
# Each recipient costs one processing of the whole message: a bounce has one, a sender that
# names more is told to try the rest later (RFC 5321 4.5.3.1.10), keeping the cost linear.
MAX_ENVELOPE_RECIPIENTS = 20
# A reply line carries at most this much of an outcome's summary (RFC 5321 allows 512 octets).
MAX_REPLY_TEXT = 300


def own_domains(settings: Settings, extra: Iterable[str] = ()) -> frozenset[str]:
    """The domains whose mail is ours to take: bounce and unsubscribe addresses', plus ``extra``."""
    domains = {d.strip().lower().rstrip(".") for d in extra if d.strip()}
    for address in (settings.bounce_address, settings.unsubscribe_address):
        domain = address.strip().rpartition("@")[2].lower()
        if domain:
            domains.add(domain)
    return frozenset(domains)


def reply_for(outcome: Outcome) -> str:
    """The SMTP reply that tells the sending MTA what became of one message."""
    if outcome.result == Result.REFUSED:
        template = TOO_BIG if outcome.limit == "size" else REFUSED
        return template.format(reason=_one_line(outcome.summary))
    if outcome.result == Result.INVALID:
        return NOT_MAIL
    return PROCESSED.format(line=_one_line(outcome.line()))


def _one_line(text: str) -> str:
    """Text fit for one reply line: printable ASCII, bounded."""
    clean = "".join(c if " " <= c <= "~" else " " for c in text)
    return " ".join(clean.split())[:MAX_REPLY_TEXT]


@dataclass
class BounceHandler:
    """aiosmtpd handler: accept our own recipients, process each message for each of them."""

    settings: Settings
    sessions: SessionFactory
    domains: frozenset[str]
    lmtp: bool = False
    # Told (recipient, reply) for every message processed: the command prints a line for each.
    report: Callable[[str, str], None] | None = None

    async def handle_RCPT(
        self,
        server: SMTP,
        session: SmtpSession,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        """Take recipients at our domains only (never a relay; spam refused before DATA)."""
        domain = address.rpartition("@")[2].lower().rstrip(".")
        if domain not in self.domains:
            return UNKNOWN_USER.format(domains=", ".join(sorted(self.domains)))
        if len(envelope.rcpt_tos) >= MAX_ENVELOPE_RECIPIENTS:
            return TOO_MANY
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: SmtpSession, envelope: Envelope) -> str:
        """Process the message once per recipient, off the event loop (database calls block)."""
        raw = bytes(envelope.original_content or b"")
        loop = asyncio.get_running_loop()
        replies = [
            await loop.run_in_executor(None, self.process, raw, recipient)
            for recipient in envelope.rcpt_tos
        ]
        if self.lmtp:
            # LMTP answers DATA once per recipient (RFC 2033 4.2); aiosmtpd sends what we return
            # as one reply, so the lines go together, each a complete reply of its own.
            return "\r\n".join(replies)
        # SMTP has one reply for all recipients: the worst one, so a deferral is never lost.
        return max(replies, key=_severity)

    def process(self, raw: bytes, recipient: str) -> str:
        """Process one message for one recipient in its own transaction; the reply for it."""
        try:
            with self.sessions() as db:
                outcome = process_message(db, self.settings, raw, recipient=recipient)
        except OperationalError:
            reply = TRY_LATER
        except Exception:  # one message must never take the server down: the MTA retries it
            reply = FAILED
        else:
            reply = reply_for(outcome)
        if self.report is not None:
            self.report(recipient, reply)
        return reply


def _severity(reply: str) -> int:
    """Order replies worst first for SMTP's single answer: a 4xx (retry) beats a 5xx beats 2xx."""
    return {"4": 2, "5": 1}.get(reply[:1], 0)


class _Factory:
    """Makes the protocol for each connection: SMTP or LMTP, bounded by the inbound size limit."""

    handler: BounceHandler
    greeting_name: str | None

    def factory(self) -> SMTP:
        """One protocol instance (aiosmtpd calls this per connection)."""
        kind = LMTP if self.handler.lmtp else SMTP
        return kind(
            self.handler,
            # aiosmtpd answers 552 past this, before the message is held whole in memory.
            data_size_limit=self.handler.settings.inbound_max_bytes,
            hostname=self.greeting_name,
            enable_SMTPUTF8=True,
            decode_data=False,
        )


class TcpMailbox(_Factory, Controller):
    """The bounce mailbox on a TCP address, served from a thread of its own."""

    def __init__(self, handler: BounceHandler, host: str, port: int, hostname: str | None) -> None:
        super().__init__(handler, hostname=host, port=port)
        self.greeting_name = hostname


class SocketMailbox(_Factory, UnixSocketController):
    """The bounce mailbox on a Unix socket (Postfix's ``lmtp:unix:/path``)."""

    def __init__(self, handler: BounceHandler, path: Path, hostname: str | None) -> None:
        super().__init__(handler, unix_socket=path)
        self.greeting_name = hostname
