"""Reading one inbound message: is it a bounce, a spam complaint or an unsubscribe request, and
what does it name? Pure functions over bytes, no database (acting on it is
newsletter/inbound/processing.py).

Everything here reads untrusted input: the parser never raises on garbage except
:class:`NotAMessage`, or :class:`InboundRefused` for a message beyond the bounds of
newsletter/inbound/limits.py (checked before the email parser runs, bodies then cut to what the
heuristics read), header values are decoded leniently and cut short, and flufl.bounce's
heuristic detectors are fenced so that one crashing on a strange message cannot stop the rest.

* **Bounces** (RFC 3464 DSNs and the older vendor formats) are detected by flufl.bounce. The
  per-recipient ``Status`` of a DSN then decides permanent (5.x.x) or temporary (4.x.x): an MTA
  that gave up on a full mailbox writes ``Action: failed`` with ``Status: 4.2.2``, and that is a
  soft bounce, not a dead address.
* **Complaints** are ARF feedback reports (RFC 5965, ``multipart/report;
  report-type=feedback-report``).
* **Unsubscribe requests** are what a mailbox provider sends to the ``mailto:`` of our
  List-Unsubscribe header: the subject carries the signed token (``unsubscribe-TOKEN``).

For bounces and complaints the report usually quotes the mail we sent (whole or its headers):
:class:`Returned` keeps its Message-ID and the signed tokens of its List-Unsubscribe header,
which prove which reader it went to even when the report hides the address.
"""

from __future__ import annotations

import enum
import logging
import re
from dataclasses import dataclass
from email import message_from_bytes
from email.header import decode_header, make_header
from email.message import Message
from email.parser import HeaderParser
from email.utils import getaddresses

from flufl.bounce import all_failures

from newsletter.inbound.limits import (
    MAX_RECIPIENTS,
    bound_text,
    check_size,
    check_tree,
    prescan,
    too_deep,
    too_many_recipients,
)

log = logging.getLogger(__name__)

HEADER_MAX = 2000  # characters kept of one header value
DIAGNOSTIC_MAX = 500
SCAN_MAX = 64 * 1024  # characters of a plain-text bounce searched for the SMTP error
# A signed token (itsdangerous URL-safe: base64url pieces joined by dots).
_SIGNED = r"[A-Za-z0-9_\-]+(?:\.[A-Za-z0-9_\-]+)+"
_SUBJECT_TOKEN = re.compile(rf"unsubscribe-({_SIGNED})", re.IGNORECASE)
_LIST_TOKENS = (
    re.compile(rf"/unsubscribe/({_SIGNED})"),
    re.compile(rf"subject=unsubscribe-({_SIGNED})", re.IGNORECASE),
)
_STATUS = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")
# "550 5.1.1 …", "550-5.1.1 …" (multi-line replies), "554: delivery error …" (Yahoo, qmail).
_SMTP_CODE = re.compile(r"(?:^|[\s;:(])([245]\d\d)(?=[\s\-:]|$)")
_COPY_MARKER = re.compile(
    r"^-+ *(?:This is a copy of|Original message|Undelivered message|The original message"
    r"|Below this line is a copy of)",  # the last one: qmail's, and Yahoo's after it
    re.IGNORECASE | re.MULTILINE,
)
# Headers that show where a report was delivered: a VERP address may hide in any of them.
_ENVELOPE_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To")
_MAIL_HEADERS = ("From", "To", "Subject", "Date", "Message-ID", "Received", "Content-Type")
# ARF feedback types that mean "the reader did not want this" (not-spam, auth-failure do not).
COMPLAINT_TYPES = frozenset({"abuse", "fraud"})


class NotAMessage(ValueError):
    """Input that is not an RFC 5322 message at all, or too large to read."""


class MessageKind(enum.StrEnum):
    """What an inbound message is."""

    BOUNCE = "bounce"
    COMPLAINT = "complaint"
    UNSUBSCRIBE = "unsubscribe"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Failure:
    """One recipient a bounce reports as failed."""

    address: str
    permanent: bool
    status: str = ""  # enhanced status code, e.g. "5.1.1"
    diagnostic: str = ""  # the remote server's words, one line

    @property
    def smtp_code(self) -> int | None:
        """The three-digit SMTP reply code in the diagnostic, when there is one."""
        match = _SMTP_CODE.search(self.diagnostic)
        return int(match.group(1)) if match else None

    def describe(self) -> str:
        """Status and diagnostic on one line, for delivery rows and suppression details."""
        text = " ".join(part for part in (self.status, self.diagnostic) if part)
        return text or ("permanent failure" if self.permanent else "temporary failure")


@dataclass(frozen=True)
class Returned:
    """What a report quotes of the mail we sent."""

    message_id: str = ""
    tokens: tuple[str, ...] = ()  # signed unsubscribe/manage tokens from List-Unsubscribe
    recipients: tuple[str, ...] = ()  # its To addresses (a complaint may have redacted them)
    return_path: str = ""


@dataclass(frozen=True)
class Inbound:
    """One inbound message, read."""

    kind: MessageKind
    message_id: str = ""
    # Addresses the message was delivered to or names as the original sender: VERP candidates.
    envelope: tuple[str, ...] = ()
    failures: tuple[Failure, ...] = ()
    feedback_type: str = ""
    complained: tuple[str, ...] = ()  # ARF Original-Rcpt-To (and the quoted mail's To)
    returned: Returned | None = None
    token: str = ""  # of an unsubscribe request
    note: str = ""  # why an UNKNOWN is unknown


def read_message(raw: bytes, *, recipient: str = "", max_bytes: int = 10 * 1024 * 1024) -> Inbound:
    """Classify one raw message; raises NotAMessage for junk, InboundRefused beyond a limit."""
    check_size(raw, max_bytes)
    if not raw.strip():
        raise NotAMessage("empty input")
    prescan(raw)
    try:
        msg = message_from_bytes(raw)
    except RecursionError:  # the scan should have refused it; never let the parser crash
        raise too_deep() from None
    check_tree(msg)
    bound_text(msg)
    if not any(name in msg for name in _MAIL_HEADERS):
        raise NotAMessage("no mail headers (From, To, Subject, Date, ...) found")
    message_id = header(msg, "Message-ID")
    envelope = _envelope(msg, recipient)

    feedback = _feedback_report(msg)
    if feedback is not None:
        return _complaint(msg, feedback, message_id, envelope)
    subject = header(msg, "Subject")
    match = _SUBJECT_TOKEN.search(subject)
    # The token in the subject is checked before the bounce heuristics, which could misread the
    # provider's boilerplate in a real request; a report never carries our token in its subject.
    if match and msg.get_content_type() != "multipart/report":
        return Inbound(MessageKind.UNSUBSCRIBE, message_id, envelope, token=match.group(1))
    failures = _failures(msg)
    if failures:
        return Inbound(
            MessageKind.BOUNCE, message_id, envelope, failures=failures, returned=_returned(msg)
        )
    if _is_delivery_report(msg):
        return Inbound(
            MessageKind.UNKNOWN,
            message_id,
            envelope,
            note="delivery report that names no failed recipient",
        )
    if re.match(r"(?:re:\s*)?unsubscribe\b", subject.strip(), re.IGNORECASE):
        return Inbound(MessageKind.UNSUBSCRIBE, message_id, envelope)
    return Inbound(
        MessageKind.UNKNOWN,
        message_id,
        envelope,
        note="not a bounce, complaint or unsubscribe request",
    )


def _complaint(
    msg: Message, feedback: Message, message_id: str, envelope: tuple[str, ...]
) -> Inbound:
    """An ARF report: the complained-about reader's traces, or UNKNOWN for a benign type."""
    feedback_type = header(feedback, "Feedback-Type").lower()[:40] or "abuse"
    if feedback_type not in COMPLAINT_TYPES:
        return Inbound(
            MessageKind.UNKNOWN,
            message_id,
            envelope,
            feedback_type=feedback_type,
            note=f"feedback report of type {feedback_type!r}, not a complaint",
        )
    returned = _returned(msg)
    complained = _addresses(feedback.get_all("Original-Rcpt-To", []))
    if len(complained) > MAX_RECIPIENTS:
        raise too_many_recipients()
    senders = _addresses(feedback.get_all("Original-Mail-From", []))
    if returned is not None:
        complained += tuple(a for a in returned.recipients if a not in complained)
        if returned.return_path:
            senders += (returned.return_path,)
    return Inbound(
        MessageKind.COMPLAINT,
        message_id,
        envelope + tuple(a for a in senders if a not in envelope),
        feedback_type=feedback_type,
        complained=complained,
        returned=returned,
    )


# --- headers -------------------------------------------------------------------------------------


def header(msg: Message, name: str) -> str:
    """A header's value, RFC 2047 decoded, whitespace collapsed, cut short; "" when absent."""
    value = msg.get(name)
    if value is None:
        return ""
    return _decode(value)


def _decode(value: object) -> str:
    """Decode one header value without ever raising (bad charsets and encodings included)."""
    raw = str(value)[: HEADER_MAX * 4]
    try:
        text = str(make_header(decode_header(raw)))
    except (LookupError, ValueError, UnicodeError, AssertionError, TypeError):
        text = raw
    return printable(text)[:HEADER_MAX]


def printable(text: str) -> str:
    """One line without control characters (report lines end up on terminals and in logs)."""
    text = text.encode("utf-8", "replace").decode("utf-8")
    return " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())


def _addresses(values: list[object] | list[str]) -> tuple[str, ...]:
    """Bare addresses from header values like ``<a@b>`` or ``rfc822; a@b``, lower-cased."""
    out: list[str] = []
    for value in values:
        text = _decode(value)
        if ";" in text:  # DSN/ARF style "rfc822; user@host"
            text = text.split(";", 1)[1]
        try:
            pairs = getaddresses([text])
        except RecursionError:  # comments nested a thousand deep: it names no address
            continue
        for _name, address in pairs:
            address = address.strip().lower()
            if "@" in address and address not in out:
                out.append(address)
    return tuple(out)


def _envelope(msg: Message, recipient: str) -> tuple[str, ...]:
    """Addresses this message was delivered to (the MTA's word first, then the headers)."""
    values: list[object] = [recipient] if recipient else []
    for name in _ENVELOPE_HEADERS:
        values.extend(msg.get_all(name, []))
    return _addresses(values)


# --- bounces -------------------------------------------------------------------------------------


def _failures(msg: Message) -> tuple[Failure, ...]:
    """Failed recipients with permanent/temporary decided by the DSN status where there is one."""
    blocks = _dsn_blocks(msg)
    try:
        temporary, permanent = all_failures(msg)
    except Exception:  # a heuristic detector choked on hostile input
        log.warning("flufl.bounce failed on message %s; using DSN fields only", msg["Message-ID"])
        temporary = frozenset(a.encode() for a, b in blocks.items() if b[0].startswith("delayed"))
        permanent = frozenset(
            a.encode() for a, b in blocks.items() if b[0].startswith(("fail", "error"))
        )
    if len(temporary) + len(permanent) > MAX_RECIPIENTS:
        # Each is looked for in the text and then in the database: refuse before either.
        raise too_many_recipients()
    found: dict[str, Failure] = {}
    for raw_address, is_permanent in [(a, False) for a in temporary] + [
        (a, True) for a in permanent
    ]:
        address = raw_address.decode("ascii", "replace").strip().lower()
        if "@" not in address or address in found:
            continue
        action, status, diagnostic = blocks.get(address, ("", "", ""))
        if not diagnostic:
            diagnostic = _plain_diagnostic(msg, address)
        if not status:
            match = _STATUS.search(diagnostic)
            status = match.group(1) if match else ""
        if action.startswith("delayed") or status.startswith("4"):
            is_permanent = False
        elif status.startswith("5"):
            is_permanent = True
        found[address] = Failure(address, is_permanent, status, diagnostic[:DIAGNOSTIC_MAX])
    return tuple(found.values())


def _dsn_blocks(msg: Message) -> dict[str, tuple[str, str, str]]:
    """Per-recipient (action, status, diagnostic) from the message/delivery-status parts."""
    blocks: dict[str, tuple[str, str, str]] = {}
    for part in msg.walk():
        if part.get_content_type() != "message/delivery-status" or not part.is_multipart():
            continue
        payload = part.get_payload()
        if not isinstance(payload, list):
            continue
        for block in payload:
            if not isinstance(block, Message):
                continue
            recipients = _addresses(
                block.get_all("Original-Recipient", []) + block.get_all("Final-Recipient", [])
            )
            diagnostic = header(block, "Diagnostic-Code")
            if diagnostic.lower().startswith("smtp;"):
                diagnostic = diagnostic[5:].strip()
            entry = (header(block, "Action").lower(), header(block, "Status")[:20], diagnostic)
            for address in recipients:
                blocks.setdefault(address, entry)
    return blocks


def _plain_diagnostic(msg: Message, address: str) -> str:
    """The SMTP error line of a non-DSN bounce: the first line after the address with a code."""
    text = _first_text(msg)
    cut = _COPY_MARKER.search(text)
    if cut:
        text = text[: cut.start()]
    lines = [line.strip() for line in text.splitlines()]
    start = next((i for i, line in enumerate(lines) if address in line.lower()), 0)
    for line in lines[start:] + lines[:start]:
        if _STATUS.search(line) or _SMTP_CODE.search(line):
            return printable(line)
    return ""


def _first_text(msg: Message) -> str:
    """The first text/plain part (or the body of a single-part message), decoded, bounded."""
    for part in msg.walk():
        if part.is_multipart() or part.get_content_maintype() != "text":
            continue
        if part.get_content_type() != "text/plain" and part is not msg:
            continue
        try:
            data = part.get_payload(decode=True)
        except (ValueError, AssertionError):
            continue
        if isinstance(data, bytes):
            charset = part.get_content_charset() or "utf-8"
            try:
                return data[:SCAN_MAX].decode(charset, "replace")
            except LookupError:
                return data[:SCAN_MAX].decode("utf-8", "replace")
    return ""


def _is_delivery_report(msg: Message) -> bool:
    """A multipart/report of delivery status (a DSN), whatever its actions."""
    return (
        msg.get_content_type() == "multipart/report"
        and str(msg.get_param("report-type", "")).lower() == "delivery-status"
    )


# --- complaints ----------------------------------------------------------------------------------


def _feedback_report(msg: Message) -> Message | None:
    """The fields of an ARF report's message/feedback-report part, or None if not an ARF."""
    is_arf = (
        msg.get_content_type() == "multipart/report"
        and str(msg.get_param("report-type", "")).lower() == "feedback-report"
    )
    for part in msg.walk():
        if part.get_content_type() != "message/feedback-report":
            continue
        payload = part.get_payload()
        if isinstance(payload, list) and payload and isinstance(payload[0], Message):
            return payload[0]
        if isinstance(payload, str):
            return HeaderParser().parsestr(payload.lstrip())
    return Message() if is_arf else None


# --- the mail we sent, as quoted by a report -----------------------------------------------------


def _returned(msg: Message) -> Returned | None:
    """The quoted original: a message/rfc822 or text/rfc822-headers part, or text after a
    "copy of the message" line in an old-style bounce."""
    original: Message | None = None
    for part in msg.walk():
        if part is msg:
            continue
        kind = part.get_content_type()
        if kind == "message/rfc822":
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                original = payload[0]
                break
        elif kind == "text/rfc822-headers":
            original = HeaderParser().parsestr(_part_text(part).lstrip())
            break
    if original is None and not msg.is_multipart():
        text = _first_text(msg)
        cut = _COPY_MARKER.search(text)
        if cut:
            rest = text[cut.end() :].split("\n", 1)[-1]
            original = HeaderParser().parsestr(rest.lstrip())
    if original is None or not any(name in original for name in _MAIL_HEADERS):
        return None
    tokens = list_unsubscribe_tokens([_decode(v) for v in original.get_all("List-Unsubscribe", [])])
    return_path = _addresses(original.get_all("Return-Path", []))
    return Returned(
        message_id=header(original, "Message-ID"),
        tokens=tokens,
        recipients=_addresses(original.get_all("To", [])),
        return_path=return_path[0] if return_path else "",
    )


def list_unsubscribe_tokens(values: list[str]) -> tuple[str, ...]:
    """The signed tokens in List-Unsubscribe header values (at most four, in order)."""
    tokens: list[str] = []
    for value in values:
        for pattern in _LIST_TOKENS:
            for token in pattern.findall(value[:HEADER_MAX]):
                if token not in tokens:
                    tokens.append(token)
    return tuple(tokens[:4])


def _part_text(part: Message) -> str:
    """A text part's content, decoded leniently."""
    try:
        data = part.get_payload(decode=True)
    except (ValueError, AssertionError):
        data = None
    if isinstance(data, bytes):
        try:
            return data[:SCAN_MAX].decode(part.get_content_charset() or "utf-8", "replace")
        except LookupError:
            return data[:SCAN_MAX].decode("utf-8", "replace")
    payload = part.get_payload()
    return payload[:SCAN_MAX] if isinstance(payload, str) else ""
