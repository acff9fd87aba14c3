"""Bounds on the work one inbound message can cause: its size, MIME nesting depth, number of
parts, size of a header section and number of recipients a DSN or ARF report names.

Python's email parser recurses once per nested multipart or message/* part (about a thousand
levels overflow the stack) and checks every line against every enclosing boundary, so its time
grows with size times depth. :func:`prescan` therefore walks the raw lines once, keeping the open
boundaries in a dict, and refuses a message beyond a limit before the parser sees it; the parser
then runs in time linear in the size. :func:`check_tree` counts again on the parsed tree,
without recursion, in case the scan and the parser ever read a message differently.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from email.message import Message

MAX_DEPTH = 20  # nested multiparts and message/* parts; real mail has a handful
MAX_PARTS = 200  # MIME parts, the message itself included
MAX_RECIPIENTS = 100  # recipients one DSN or ARF report names (each costs database look-ups)
MAX_HEADER_BYTES = 256 * 1024  # one header section: long Received chains are tens of KiB
# A field read for its parameters: the email package's parameter parser takes time growing with
# the square of its length (an open quote and many ";"), once per call.
MAX_PARAM_FIELD = 1000  # characters, folded lines included (RFC 5322 lines stop at 998)
# What the bounce heuristics read of the bodies: flufl.bounce runs each of ~50 patterns over
# every body line, and some backtrack over a whole line (time grows with its square).
TEXT_MAX = 128 * 1024  # characters, over all parts
TEXT_LINES_MAX = 5000  # lines, over all parts (a bounce's own words take a few dozen)
PART_TEXT_MAX = 64 * 1024  # characters of one part
LINE_MAX = 1000  # characters of one line (RFC 5322 allows 998)

# The email package's own test for a header line (email.feedparser.headerRE): a line that is
# not one ends the header section just like a blank line does.
_HEADER_LINE = re.compile(r"^(From |[\041-\071\073-\176]*:|[\t ])")
_PARAM_FIELDS = frozenset(
    {"content-type", "content-disposition", "original-recipient", "final-recipient"}
)


class InboundRefused(ValueError):
    """A message beyond one of the limits: refused unread, with the limit and the reason."""

    def __init__(self, limit: str, reason: str) -> None:
        super().__init__(reason)
        self.limit = limit  # "size", "depth", "parts", "headers" or "recipients"
        self.reason = reason


def check_size(raw: bytes, max_bytes: int) -> None:
    """Refuse input larger than ``max_bytes``."""
    if len(raw) > max_bytes:
        raise InboundRefused("size", f"larger than {max_bytes} bytes; not read")


def too_deep() -> InboundRefused:
    """The refusal for nesting the parser could not follow."""
    return InboundRefused("depth", f"MIME parts nested deeper than {MAX_DEPTH} levels")


def too_many_parts() -> InboundRefused:
    """The refusal for more parts than we walk."""
    return InboundRefused("parts", f"more than {MAX_PARTS} MIME parts")


def too_many_recipients() -> InboundRefused:
    """The refusal for a report that names more recipients than we look up."""
    return InboundRefused("recipients", f"report names more than {MAX_RECIPIENTS} recipients")


@dataclass
class _Frame:
    """One open container: a multipart (its boundary) or a message/* part (no boundary)."""

    boundary: str | None
    content_type: str = ""


@dataclass
class _Scan:
    """The state of :func:`prescan` between lines."""

    frames: list[_Frame] = field(default_factory=list)
    open: dict[str, list[int]] = field(default_factory=dict)  # boundary -> frame indexes
    mode: str = "headers"  # "headers", "body" or "dsn"
    swallow: str | None = None  # the boundary whose lines the parser skips after a separator
    headers: list[str] = field(default_factory=list)  # lines of the Content-Type header
    in_content_type: bool = False
    header_bytes: int = 0
    field: str = ""  # the field the last header line belongs to, lower-case
    field_chars: int = 0
    parts: int = 1
    recipients: int = 0

    def new_part(self) -> None:
        """A part's header section starts."""
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise too_many_parts()
        self.start_headers()

    def start_headers(self) -> None:
        """Read a header section next."""
        self.mode, self.headers, self.in_content_type, self.header_bytes = "headers", [], False, 0
        self.field, self.field_chars = "", 0

    def push(self, boundary: str | None, content_type: str) -> None:
        """Open a container, refusing it beyond the depth limit."""
        if len(self.frames) >= MAX_DEPTH:
            raise too_deep()
        if boundary is not None:
            self.open.setdefault(boundary, []).append(len(self.frames))
        self.frames.append(_Frame(boundary, content_type))

    def close_above(self, index: int) -> None:
        """Close every container opened inside frame ``index``."""
        while len(self.frames) > index + 1:
            self.pop()

    def pop(self) -> None:
        """Close the innermost container."""
        frame = self.frames.pop()
        if frame.boundary is not None:
            indexes = self.open[frame.boundary]
            indexes.pop()
            if not indexes:
                del self.open[frame.boundary]

    def recipient(self) -> None:
        """Count one recipient named by a report."""
        self.recipients += 1
        if self.recipients > MAX_RECIPIENTS:
            raise too_many_recipients()


def prescan(raw: bytes) -> None:
    """Refuse a message beyond the structure limits, in one pass over its lines."""
    text = raw.decode("ascii", "surrogateescape")  # as email.message_from_bytes reads it
    scan = _Scan()
    # newline="" splits at \r, \n and \r\n, as the email parser does, and keeps the endings.
    for line in io.StringIO(text, newline=""):
        _scan_line(scan, line)
    if scan.mode == "headers":
        _end_headers(scan)


def _scan_line(scan: _Scan, line: str) -> None:
    """One raw line, read again where the parser reads it again."""
    if scan.swallow is not None:
        if _boundary_of(line) in (scan.swallow, scan.swallow + "--"):
            return
        scan.swallow = None
    while True:
        if line.startswith("--") and scan.open and _boundary_line(scan, line):
            return
        if scan.mode == "dsn":
            # Blocks of fields, one per recipient after the first; each names one Final-Recipient.
            if _field_line(scan, line) == "final-recipient":
                scan.recipient()
            return
        # A line that is no header ends the header section and is read again as body (a
        # boundary, say) or as the first line of the message a message/* part holds. Each
        # round opens a container or leaves the headers, so this ends.
        if scan.mode != "headers" or not _header_line(scan, line):
            return


def _boundary_line(scan: _Scan, line: str) -> bool:
    """Act on a line that opens or closes a part of an open multipart; False for any other."""
    text = _boundary_of(line)
    closing = False
    indexes = scan.open.get(text)
    if indexes is None and text.endswith("--"):
        text = text[:-2]
        indexes, closing = scan.open.get(text), True
    if not indexes:
        return False
    index = indexes[-1]
    if scan.mode == "headers":
        # The parser still makes an (empty) message of a message/* part cut off here.
        _end_headers(scan)
    scan.close_above(index)
    if closing:
        scan.pop()
        scan.mode = "body"  # the epilogue, read as text up to an enclosing boundary
    else:
        scan.new_part()
        # The parser skips boundary lines of this multipart that follow at once (no part
        # between them), a closing one included.
        scan.swallow = text
    return True


def _boundary_of(line: str) -> str:
    """What a line would name as a boundary: without its ``--``, trailing blanks and ending."""
    return line.rstrip("\r\n").rstrip(" \t")[2:] if line.startswith("--") else "\r"


def _header_line(scan: _Scan, line: str) -> bool:
    """One header line: keep the Content-Type; True when the line ended the section, unblank."""
    scan.header_bytes += len(line)
    if scan.header_bytes > MAX_HEADER_BYTES:
        raise InboundRefused("headers", f"a header section larger than {MAX_HEADER_BYTES} bytes")
    if not _HEADER_LINE.match(line):
        _end_headers(scan)
        return line[0] not in "\r\n"
    name = _field_line(scan, line)
    if line[0] in " \t":
        if scan.in_content_type:
            scan.headers.append(line)
        return False
    scan.in_content_type = False
    if name == "content-type" and not scan.headers:  # the parser, too, reads only the first
        scan.headers.append(line)
        scan.in_content_type = True
    elif name == "original-rcpt-to" and _parent_type(scan) == "message/feedback-report":
        scan.recipient()
    return False


def _field_line(scan: _Scan, line: str) -> str:
    """Follow the field a line belongs to; its name if the line starts one, else ""."""
    if line[0] in " \t":
        scan.field_chars += len(line)
        name = ""
    else:
        name = line.split(":", 1)[0].strip().lower() if ":" in line else ""
        scan.field, scan.field_chars = name, len(line)
    if scan.field in _PARAM_FIELDS and scan.field_chars > MAX_PARAM_FIELD:
        raise InboundRefused(
            "headers", f"a {scan.field} field longer than {MAX_PARAM_FIELD} characters"
        )
    return name


def _end_headers(scan: _Scan) -> None:
    """A header section ended: open what its Content-Type makes of the body."""
    content = Message()
    if _parent_type(scan) == "multipart/digest":
        content.set_default_type("message/rfc822")  # as the parser does for a digest's parts
    if scan.headers:
        value = "".join(scan.headers).split(":", 1)[1].lstrip(" \t").rstrip("\r\n")
        content["Content-Type"] = value
    kind = content.get_content_type()
    scan.mode = "body"
    if kind.startswith("multipart/"):
        boundary = content.get_boundary()
        if boundary is not None:
            scan.push(boundary, kind)
    elif kind == "message/delivery-status":
        scan.mode = "dsn"
    elif kind.startswith("message/"):
        # The parser reads the body of any other message/* part as a message of its own.
        scan.push(None, kind)
        scan.new_part()


def _parent_type(scan: _Scan) -> str:
    """The content type of the innermost open container ("" at the top)."""
    return scan.frames[-1].content_type if scan.frames else ""


def check_tree(msg: Message) -> None:
    """Refuse a parsed message beyond the depth, parts or recipients limits (no recursion)."""
    parts = 0
    recipients = 0
    stack: list[tuple[Message, int]] = [(msg, 0)]
    while stack:
        part, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise too_deep()
        parts += 1
        if parts > MAX_PARTS:
            raise too_many_parts()
        payload = part.get_payload()
        if not isinstance(payload, list):
            continue
        if part.get_content_type() == "message/delivery-status":
            # Its payload is blocks of fields, one per recipient after the first: not parts.
            recipients += sum(
                1 for block in payload if isinstance(block, Message) and "Final-Recipient" in block
            )
            if recipients > MAX_RECIPIENTS:
                raise too_many_recipients()
            continue
        stack.extend((child, depth + 1) for child in payload if isinstance(child, Message))


def bound_text(msg: Message) -> None:
    """Cut the bodies in place to what the heuristics read (the *_MAX of body text above)."""
    chars, lines = TEXT_MAX, TEXT_LINES_MAX
    stack: list[Message] = [msg]
    while stack:
        part = stack.pop()
        payload = part.get_payload()
        if isinstance(payload, list):
            stack.extend(reversed([child for child in payload if isinstance(child, Message)]))
            continue
        if not isinstance(payload, str):
            continue
        # Split at "\n" only: the heuristics read lines as email.iterators does.
        kept = payload[: min(PART_TEXT_MAX, chars)].split("\n")[: max(lines, 1)]
        text = "\n".join(line[:LINE_MAX] for line in kept)
        chars, lines = chars - len(text), lines - len(kept)
        if text != payload:
            part.set_payload(text)
