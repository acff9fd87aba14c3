"""The text part of an HTML body: headings, paragraphs, lists and links as a reader expects
them in plain text, wrapped at 72 columns and never breaking a URL.

It reads what :func:`newsletter.content.sanitize.clean_html` writes (nh3's serialiser: quoted
attributes, every ``<`` in text escaped, no comments), with one regular expression per token
and no backtracking across tokens, so its time is linear in the input whatever that is; markup
it does not recognise is read as text. Nesting is only counted: indentation stops growing after
a few levels, so the output stays linear in the input too.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

WIDTH = 72
MAX_DEPTH = 4  # list and quote levels that indent further; deeper ones line up with the 4th
RULE = "-" * 20

# A start or end tag as nh3 writes it; attributes quoted or bare, never a "<" or ">" outside
# quotes. Each alternative consumes different characters, so a failed match costs only the
# characters up to the next "<", ">" or closing quote.
_TAG = re.compile(
    r"<(/?)([A-Za-z][A-Za-z0-9]*)"
    r"((?:\s+[^\s\"'<>/=]+(?:\s*=\s*(?:\"[^\"]*\"|'[^']*'|[^\s\"'<>]+))?)*)\s*/?>"
)
_ATTRIBUTE = re.compile(r"([^\s\"'<>/=]+)(?:\s*=\s*(?:\"([^\"]*)\"|'([^']*)'|([^\s\"'<>]+)))?")
_SPACES = re.compile(r"[ \t\n\r\f\v]+")
_RUNS = re.compile(" {2,}")
_SCHEME = re.compile(r"^(?:https?://|mailto:)", re.IGNORECASE)

_PARAGRAPHS = frozenset({"p", "div", "figure", "figcaption", "table", "tr", "section", "article"})
_HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
_SHOUTED = frozenset({"h1", "h2"})  # the top headings in capitals; the others underlined
_DROPPED = frozenset({"script", "style", "template", "head", "title"})


@dataclass
class _Block:
    """One run of lines of the output and whether it sits tight against its neighbour."""

    text: str
    tight: bool  # a list item: one line break from the item before it, not a blank line
    group: int  # which top-level list it belongs to: two lists in a row stay apart


@dataclass
class _Writer:
    """Turns the token stream into blocks of wrapped text."""

    blocks: list[_Block] = field(default_factory=list)
    inline: list[str] = field(default_factory=list)  # the paragraph being read; "\n" = <br>
    lists: list[list[int]] = field(default_factory=list)  # per open list: [next number or 0]
    indents: list[str] = field(default_factory=list)  # per open list item: the indent so far
    marker: str = ""  # the bullet or number waiting for the item's first line
    group: int = 0
    quotes: int = 0
    heading: str = ""
    pre: int = 0
    dropped: int = 0
    links: list[tuple[str, int]] = field(default_factory=list)  # (href, where its text starts)

    # Text

    def text(self, raw: str) -> None:
        """Add the text between two tags (entities decoded)."""
        if self.dropped:
            return
        value = html.unescape(raw)
        if not self.pre:
            value = _SPACES.sub(" ", value)
            if self.heading in _SHOUTED:
                value = value.upper()
        self.inline.append(value)

    def start(self, tag: str, attributes: str) -> None:
        """An opening tag."""
        if tag in _DROPPED:
            self.dropped += 1
        elif self.dropped:
            return
        elif tag in _PARAGRAPHS or tag == "hr":
            self.flush()
            if tag == "hr":
                self._add(RULE)
        elif tag in _HEADINGS:
            self.flush()
            self.heading = tag
        elif tag == "br":
            self.inline.append("\n")
        elif tag in {"ul", "ol"}:
            self.flush()
            if not self.lists:
                self.group += 1
            self.lists.append([1 if tag == "ol" else 0])
        elif tag == "li":
            self.flush()
            counter = self.lists[-1] if self.lists else [0]
            self.marker = f"{counter[0]}. " if counter[0] else "* "
            if counter[0]:
                counter[0] += 1
            outer = self.indents[-1] if self.indents else ""
            deeper = " " * len(self.marker) if len(self.indents) < MAX_DEPTH else ""
            self.indents.append(outer + deeper)
        elif tag == "blockquote":
            self.flush()
            self.quotes += 1
        elif tag == "pre":
            self.flush()
            self.pre += 1
        elif tag == "a":
            self.links.append((_attribute(attributes, "href"), len(self.inline)))
        elif tag == "img":
            alt = " ".join(_attribute(attributes, "alt").split())
            if alt:
                self.inline.append(f"[{alt}]")

    def end(self, tag: str) -> None:
        """A closing tag."""
        if tag in _DROPPED:
            self.dropped = max(0, self.dropped - 1)
        elif self.dropped:
            return
        elif tag in _PARAGRAPHS:
            self.flush()
        elif tag in _HEADINGS:
            self.flush()
            self.heading = ""
        elif tag in {"ul", "ol"}:
            self.flush()
            if self.lists:
                self.lists.pop()
        elif tag == "li":
            self.flush()
            if self.indents:
                self.indents.pop()
            self.marker = ""
        elif tag == "blockquote":
            self.flush()
            self.quotes = max(0, self.quotes - 1)
        elif tag == "pre":
            self.flush()
            self.pre = max(0, self.pre - 1)
        elif tag == "a" and self.links:
            self._end_link(*self.links.pop())

    def _end_link(self, href: str, start: int) -> None:
        """Write a link's address after its text, unless the text already says it."""
        href = href.strip().replace(" ", "%20")
        if not href or not _SCHEME.match(href):
            return  # a relative or odd link goes nowhere from a mail client: keep the text only
        shown = href[7:] if href.lower().startswith("mailto:") else href
        label = " ".join("".join(self.inline[start:]).split())
        if label.rstrip("/") in {href.rstrip("/"), shown.rstrip("/"), _bare(href).rstrip("/")}:
            self.inline[start:] = [shown]  # the address is its own text: print it once
            return
        self.inline.append(f" ({shown})" if label else shown)

    # Output

    def flush(self) -> None:
        """End the paragraph being read: wrap it and add it as a block."""
        text, self.inline = "".join(self.inline), []
        if self.pre:
            text = text.strip("\n")
            if text.strip():
                self._add(text, wrap=False)
            return
        lines = [_RUNS.sub(" ", line).strip(" ") for line in text.split("\n")]
        while lines and not lines[-1]:
            lines.pop()
        if any(lines):
            self._add("\n".join(lines))

    def _add(self, text: str, wrap: bool = True) -> None:
        """Add a paragraph with the indent, bullet and quote marks of where it stands."""
        quote = "> " * min(self.quotes, MAX_DEPTH)
        hanging = quote + (self.indents[-1] if self.indents else "")
        first = hanging
        if self.marker:
            first = hanging[: len(hanging) - len(self.marker)] + self.marker
            self.marker = ""
        lines: list[str] = []
        for line in text.split("\n"):
            lead = first if not lines else hanging
            if not wrap:
                lines.append(lead + line)
            elif line:
                lines += _wrap(line, lead, hanging)
            else:
                lines.append(lead)  # a blank line a <br><br> asked for
        if self.heading and self.heading not in _SHOUTED:
            longest = max(len(line) for line in lines) - len(hanging)
            lines.append(hanging + "-" * min(WIDTH, max(longest, 1)))
        text = "\n".join(line.rstrip() for line in lines)
        self.blocks.append(_Block(text, bool(self.indents), self.group))

    def result(self) -> str:
        """Every block, a blank line between two (one line break between list items)."""
        self.flush()
        out: list[str] = []
        for index, block in enumerate(self.blocks):
            if index:
                before = self.blocks[index - 1]
                tight = block.tight and before.tight and block.group == before.group
                out.append("\n" if tight else "\n\n")
            out.append(block.text)
        return "".join(out)


def html_to_plain_text(fragment: str) -> str:
    """Plain text of sanitised HTML (``clean_html`` output) that keeps its structure."""
    writer = _Writer()
    position = 0
    length = len(fragment)
    while position < length:
        opening = fragment.find("<", position)
        if opening < 0:
            writer.text(fragment[position:])
            break
        if opening > position:
            writer.text(fragment[position:opening])
        match = _TAG.match(fragment, opening)
        if match is None:
            writer.text("<")
            position = opening + 1
            continue
        closing, tag, attributes = match.groups()
        if closing:
            writer.end(tag.lower())
        else:
            writer.start(tag.lower(), attributes)
        position = match.end()
    return writer.result()


def _attribute(attributes: str, wanted: str) -> str:
    """One attribute's decoded value from a tag's attribute text ("" when absent)."""
    for match in _ATTRIBUTE.finditer(attributes):
        if match.group(1).lower() == wanted:
            value = next((g for g in match.groups()[1:] if g is not None), "")
            return html.unescape(value)
    return ""


def _bare(url: str) -> str:
    """A URL without its scheme, as link texts often show it."""
    return url.split("://", 1)[-1]


def _wrap(line: str, first: str, hanging: str) -> list[str]:
    """Greedy wrap at WIDTH; a word longer than a line (a URL) stands alone, unbroken."""
    out: list[str] = []
    current = first
    has_word = False
    for word in line.split(" "):
        if not word:
            continue
        if has_word and len(current) + 1 + len(word) > WIDTH:
            out.append(current)
            current, has_word = hanging, False
        if has_word:
            current += " " + word
        elif len(current) + len(word) > WIDTH and current.strip():
            # Only a bullet or quote mark before an over-long word: keep them on its line.
            current += word
        elif len(current) + len(word) > WIDTH:
            current = word  # no indent before a URL longer than the line, so it stays whole
        else:
            current += word
        has_word = True
    if has_word or current.strip():
        out.append(current)
    return out
