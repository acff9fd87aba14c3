"""Cheap per-reader MIME: body parts pre-encoded once, per-reader strings spliced in as bytes.

A body part is rendered once per issue with marker strings where per-reader values go (a
:class:`Skeleton`). Quoted-printable is line-local, so every run of complete lines between two
markers is encoded once; per reader only the few lines that hold a marker are encoded again
(``binascii.b2a_qp`` in C, a microsecond a line). The result is byte-for-byte a valid
quoted-printable body: soft breaks keep lines under 78 octets, CRLF everywhere.

Headers get the same treatment: the static ones are encoded and folded once, and the per-reader
``To`` is built by the same small, strict encoder (:mod:`newsletter.mail.headers`) instead of
``EmailMessage`` (a full ``EmailMessage.as_bytes()`` costs ~3 ms a mail on this project's 2-core
machine, about a hundred times the splice; bench/profile_send.py shows where a mail's time goes).
"""

from __future__ import annotations

import binascii
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email import quoprimime
from email.utils import format_datetime

CRLF = "\r\n"
MAX_QP_LINE = 76  # RFC 2045: encoded lines are at most 76 characters


def qp(text: str) -> bytes:
    """Quoted-printable of UTF-8 text whose line ends are CRLF (lines start at a line start)."""
    data = text.encode("utf-8")
    if data.endswith(b"\r\n"):
        out = binascii.b2a_qp(data, False, True, False)
    else:
        # b2a_qp picks CRLF or LF for its soft line breaks from the first line end it sees:
        # give it one, so a long last line is never broken with a bare LF.
        out = binascii.b2a_qp(data + b"\r\n", False, True, False)[:-2]
    if len(out) > MAX_QP_LINE and max(map(len, out.split(b"\r\n"))) > MAX_QP_LINE:
        # b2a_qp can make a 77-character line when it encodes whitespace at a line's end;
        # RFC 2045 allows 76. The pure-Python encoder gets it right (and is rarely needed).
        out = quoprimime.body_encode(data.decode("latin-1"), MAX_QP_LINE, CRLF).encode("ascii")
    return out


def crlf(text: str) -> str:
    """Normalise every line end to CRLF."""
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", CRLF)


@dataclass(frozen=True)
class Literal:
    """Fixed text of a part, with its complete lines already encoded."""

    text: str
    head: str  # up to and including the first CRLF, or the whole text when there is none
    head_qp: bytes  # QP of ``head`` when it starts a line
    body_qp: bytes  # QP of the complete lines after ``head``
    tail: str  # after the last CRLF: a partial line, joined with what follows per reader
    tail_qp: bytes  # QP of ``tail`` + CRLF: the usual case of a line ended by the next literal
    has_newline: bool

    @classmethod
    def of(cls, text: str) -> Literal:
        """Split ``text`` (CRLF line ends) at its first and last line ends and encode the middle."""
        first = text.find(CRLF)
        if first < 0:
            return cls(text, text, b"", b"", "", b"", False)
        last = text.rfind(CRLF)
        head = text[: first + 2]
        middle = text[first + 2 : last + 2]
        tail = text[last + 2 :]
        return cls(
            text,
            head,
            qp(head),
            qp(middle) if middle else b"",
            tail,
            qp(tail + CRLF) if tail else b"",
            True,
        )


@dataclass(frozen=True)
class Slot:
    """Where one per-reader value goes; ``attribute`` says which HTML escaping it needs."""

    field: str
    attribute: bool = False


Segment = Literal | Slot


class Encoder:
    """Accumulates one part's quoted-printable bytes for one reader."""

    __slots__ = ("open_tail", "out", "pending")

    def __init__(self) -> None:
        self.out: list[bytes] = []
        self.pending: list[str] = []
        # The literal whose tail is all that ``pending`` holds, if so (its line is pre-encoded).
        self.open_tail: Literal | None = None

    def literal(self, chunk: Literal) -> None:
        """Append fixed text, re-encoding only a line it shares with per-reader text."""
        if not chunk.has_newline:
            if chunk.text:
                self.pending.append(chunk.text)
                self.open_tail = None
            return
        if self.pending:
            if self.open_tail is not None and chunk.head == CRLF:
                self.out.append(self.open_tail.tail_qp)
            else:
                self.pending.append(chunk.head)
                self._flush()
            self.pending = []
        else:
            self.out.append(chunk.head_qp)
        if chunk.body_qp:
            self.out.append(chunk.body_qp)
        if chunk.tail:
            self.pending.append(chunk.tail)
            self.open_tail = chunk
        else:
            self.open_tail = None

    def value(self, text: str) -> None:
        """Append a per-reader string (never contains a line break)."""
        if text:
            self.pending.append(text)
            self.open_tail = None

    def segments(self, segments: Sequence[Segment], values: Mapping[str, str]) -> None:
        """Append a run of literals and slots filled from ``values``."""
        for segment in segments:
            if isinstance(segment, Literal):
                self.literal(segment)
            else:
                self.value(values[segment.field])

    def _flush(self) -> None:
        """Encode the pending line(s): fixed text with the per-reader strings within."""
        self.out.append(qp("".join(self.pending)))

    def chunks(self) -> list[bytes]:
        """The encoded part as pieces, to be joined once with the rest of the message."""
        if self.pending:
            self._flush()
            self.pending = []
        return self.out

    def finish(self) -> bytes:
        """The encoded part."""
        return b"".join(self.chunks())


class Hole(str):
    """A per-reader value left open in a :class:`Plan`: its text is the format field, "{name}"."""

    __slots__ = ()

    @classmethod
    def named(cls, field: str) -> Hole:
        """The hole for ``field`` (a key of the values a plan is filled with)."""
        return cls("{" + field + "}")


@dataclass(frozen=True)
class Plan:
    """One part for one selection of posts with the per-reader values still open.

    ``pieces`` are the encoded part with an empty placeholder for each line that holds a
    :class:`Hole`; ``lines`` say where those go and how to make them (a format string).
    Filling it per reader is a list copy and a few one-line encodings, where walking the
    segments again costs some twenty calls (most of a mail's rendering time).
    """

    pieces: tuple[bytes, ...]
    lines: tuple[tuple[int, str], ...]

    def fill(self, values: Mapping[str, str]) -> list[bytes]:
        """The encoded part for one reader's ``values`` (line breaks never allowed in them)."""
        out = list(self.pieces)
        for index, line in self.lines:
            out[index] = qp(line.format_map(values))
        return out


class PlanBuilder(Encoder):
    """An :class:`Encoder` run once per selection, with :class:`Hole` for per-reader values."""

    __slots__ = ("lines",)

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[tuple[int, str]] = []

    def _flush(self) -> None:
        """Encode fixed lines now; keep lines with a hole as a format string for later."""
        if not any(type(piece) is Hole for piece in self.pending):
            super()._flush()
            return
        line = "".join(
            piece if type(piece) is Hole else piece.replace("{", "{{").replace("}", "}}")
            for piece in self.pending
        )
        self.lines.append((len(self.out), line))
        self.out.append(b"")

    def plan(self) -> Plan:
        """The finished plan."""
        return Plan(tuple(self.chunks()), tuple(self.lines))


# --- Escaping per-reader values for the HTML part -----------------------------------------------


def escape_text(value: str) -> str:
    """Escape for an HTML text node, exactly as the CSS inliner serialises one."""
    # Chained replace is several times faster than str.translate for these short strings.
    if "&" in value:
        value = value.replace("&", "&amp;")
    if "<" in value:
        value = value.replace("<", "&lt;")
    if ">" in value:
        value = value.replace(">", "&gt;")
    if "\xa0" in value:
        value = value.replace("\xa0", "&nbsp;")
    return value


def escape_attribute(value: str) -> str:
    """Escape for a double-quoted HTML attribute, as the CSS inliner serialises one."""
    if "&" in value:
        value = value.replace("&", "&amp;")
    if '"' in value:
        value = value.replace('"', "&quot;")
    if "\xa0" in value:
        value = value.replace("\xa0", "&nbsp;")
    return value


def inside_tag(html: str, position: int) -> bool:
    """True when ``position`` lies inside a start tag (so in an attribute value)."""
    return html.rfind("<", 0, position) > html.rfind(">", 0, position)


# --- Headers -------------------------------------------------------------------------------------


def raw_header(name: str, value: str) -> bytes:
    """An ASCII header written as is (values we build ourselves, known to be safe).

    Values from content or people go through :mod:`newsletter.mail.headers` instead.
    """
    if not value.isascii() or not value.isprintable():
        raise ValueError(f"{name} must be printable ASCII on one line")
    return f"{name}: {value}{CRLF}".encode("ascii")


_date_cache: tuple[int, bytes] = (0, b"")


def date_header(now: float | None = None) -> bytes:
    """The ``Date`` header, formatted once a second."""
    global _date_cache
    second = int(time.time() if now is None else now)
    cached_second, cached = _date_cache
    if cached_second != second or not cached:
        stamp = format_datetime(datetime.fromtimestamp(second, UTC))
        cached = f"Date: {stamp}{CRLF}".encode("ascii")
        _date_cache = (second, cached)
    return cached
