"""Whether html5ever parses a fragment in linear time, told by a scan of its tags (no parser).

html5ever (the parser behind nh3) is linear on ordinary markup, but some of its steps cost the
size of a structure it keeps, once per token:

* the stack of open elements: every stray end tag walks it ("any other end tag"), and every
  block start tag walks it to close a ``<p>`` in button scope, so 20 000 unclosed ``<div>``,
  ``<ul>`` or ``<b>`` followed by as many tags cost 20 000² steps (``</form>`` and misnested
  ``</b>`` leave elements open that a well-formed document would close);
* the list of active formatting elements: each formatting start tag compares its attributes with
  the list back to the last marker (the "Noah's Ark" clause), and each run of text re-creates the
  entries no longer open, so thousands of ``<b cN>`` with distinct attributes are quadratic;
* foster parenting: content misplaced inside a ``<table>`` is inserted before the table, and the
  tree finds the table among its parent's children by a linear search, so ``<table>x</table>``
  repeated is quadratic at depth one;
* attributes: each attribute of a tag is compared with the tag's earlier ones.

``too_costly`` follows the tags with a model of those structures that errs on the large side
(every step amortised O(1), so the scan itself is linear) and names the first limit a fragment
exceeds. Under every limit, each of html5ever's walks is bounded by a constant, so the parse is
linear; the limits are far above what real articles reach (a page builder nests ~30 deep).
"""

from __future__ import annotations

import re
from functools import cache


def _names(spaced: str) -> frozenset[str]:
    """The element names in a space-separated list."""
    return frozenset(spaced.split())


# Each stray end tag or block start tag walks up to MAX_DEPTH elements: ~0.5 s a MB at worst.
MAX_DEPTH = 100
# html5ever re-creates every open formatting element in each later paragraph, so a body can grow
# by this factor (and its cost with it, ~2 s a MB at worst); editors leave one or two open.
MAX_FORMATTING = 8
# Each fostered piece searches the table's siblings, at most the whole body.
MAX_FOSTERED = 64
# Each attribute is compared with the tag's earlier ones; real tags have a handful.
MAX_ATTRIBUTES = 64

# Elements that never hold content, so are never on the stack of open elements.
_VOID = _names(
    "area base basefont bgsound br col embed frame hr image img input keygen link meta param"
    " source track wbr"
)
# Never on the stack inside a fragment (html, head, body), or only inside a table (rows).
_NOT_STACKED = _names("body head html tbody tfoot thead tr")
_TABLE_SECTIONS = _names("tbody tfoot thead tr")
_CELLS = frozenset({"caption", "td", "th"})
_FORMATTING = _names("a b big code em font i nobr s small strike strong tt u")
# html5ever's "special" elements (its special_tag set): the end tag of anything else stops at
# them, and so does a new <li> looking for the open one.
_SPECIAL = _names(
    "address applet area article aside base basefont bgsound blockquote body br button caption"
    " center col colgroup dd details dir div dl dt embed fieldset figcaption figure footer form"
    " frame frameset h1 h2 h3 h4 h5 h6 head header hgroup hr html iframe img input isindex li link"
    " listing main marquee menu meta nav noembed noframes noscript object ol p param plaintext pre"
    " script section select source style summary table tbody td template textarea tfoot th thead"
    " title tr track ul wbr xmp"
)
# MathML and SVG elements where HTML starts again: they stop end tags as special elements do.
# Counted as stops whatever their namespace, which can only leave more open.
_INTEGRATION_POINTS = _names("annotation-xml desc foreignobject mi mn mo ms mtext")
# The end tag of a special element stops at these instead (html5ever's "in scope"); </p> also
# stops at a button, </li> at a list.
_SCOPE = _names("applet caption html marquee object table td template th") | _INTEGRATION_POINTS
_BUTTON_SCOPE = frozenset({"button"})
_LIST_SCOPE = frozenset({"ol", "ul"})
# A start tag of these closes an open <p> in button scope.
_CLOSES_P = _names(
    "address article aside blockquote center details dialog dir div dl dd dt fieldset figcaption"
    " figure footer form h1 h2 h3 h4 h5 h6 header hgroup hr li listing main menu nav ol p"
    " plaintext pre section summary table ul xmp"
)
# A new item closes the open one unless a special element other than these lies between.
_ITEM_TRANSPARENT = frozenset({"address", "div", "p"})
_ITEMS = {"li": ("li",), "dd": ("dd", "dt"), "dt": ("dd", "dt")}
# The end tag of any heading closes the open heading, whichever it is.
_HEADINGS = ("h1", "h2", "h3", "h4", "h5", "h6")
# Their content is text to html5ever up to their own end tag (outside SVG and MathML).
_RAW_TEXT = _names("iframe noembed noframes plaintext script style textarea xmp")
_RAW_TEXT_END = {name: re.compile(f"</{name}", re.IGNORECASE) for name in _RAW_TEXT}
# Table parts that belong in a table; anything else there is fostered out of it.
_TABLE_CONTENT = _CELLS | _TABLE_SECTIONS | {"col", "colgroup", "form", "script", "style", "table"}

# A comment opener, or a tag: its name ends where html5ever's does, and a quoted value may hold
# ">" (possessive, so the scan never backtracks).
_TOKEN = re.compile(
    r"""<(?:(!--)|(/?)([a-zA-Z][^\t\n\f\r />]*)((?:[^>"']+|"[^"]*"|'[^']*')*+)>?)"""
)
_COMMENT_END = re.compile(r"--!?>")
# An attribute as html5ever reads one: a name (quotes included), then maybe "=" and a value.
_ATTRIBUTE = re.compile(
    r"[^\t\n\f\r />][^\t\n\f\r />=]*+"
    r"""(?:[\t\n\f\r ]*+=[\t\n\f\r ]*+(?:"[^"]*+"?+|'[^']*+'?+|[^\t\n\f\r >]*+))?+"""
)
_NON_SPACE = re.compile(r"\S")


# The kinds of element that stop an end tag or a new item, in the order of _Model.marks.
_STOPS_OTHERS, _STOPS_SPECIAL, _STOPS_P, _STOPS_LI, _STOPS_ITEM = range(5)
_KINDS = (
    _SPECIAL | _INTEGRATION_POINTS,
    _SCOPE,
    _SCOPE | _BUTTON_SCOPE,
    _SCOPE | _LIST_SCOPE,
    (_SPECIAL | _INTEGRATION_POINTS) - _ITEM_TRANSPARENT,
)
_BOTTOM = (-1,) * len(_KINDS)


class _Model:
    """html5ever's stack of open elements, active formatting elements and tables, from above.

    Where the model cannot tell what html5ever closes, it keeps the element open: the depth and
    counts it reports are at least html5ever's for the shapes that matter. Beside each open
    element, ``marks`` holds the position of the nearest element of each stopping kind at or
    below it, so whether an end tag reaches an element is one comparison, and closing is a pop.
    """

    def __init__(self) -> None:
        self.stack: list[str] = []
        self.marks: list[tuple[int, ...]] = []
        self.positions: dict[str, list[int]] = {}
        self.tables: list[int] = []
        self.in_cell: list[bool] = []
        self.formatting: dict[str, int] = {}
        self.formatting_total = 0
        self.fostered = 0

    def push(self, name: str) -> None:
        """Open ``name`` on top of the stack."""
        index = len(self.stack)
        below = self.marks[-1] if self.marks else _BOTTOM
        self.stack.append(name)
        others, special, p, li, item = _stops(name)
        self.marks.append(
            (
                index if others else below[_STOPS_OTHERS],
                index if special else below[_STOPS_SPECIAL],
                index if p else below[_STOPS_P],
                index if li else below[_STOPS_LI],
                index if item else below[_STOPS_ITEM],
            )
        )
        self.positions.setdefault(name, []).append(index)
        if name == "table":
            self.tables.append(index)
            self.in_cell.append(False)
        elif name in _CELLS:
            self.in_cell[-1] = True

    def pop_to(self, index: int) -> None:
        """Close every element from the top of the stack down to the one at ``index``."""
        while len(self.stack) > index:
            name = self.stack.pop()
            self.marks.pop()
            self.positions[name].pop()
            if name == "table":
                self.tables.pop()
                self.in_cell.pop()
            elif name in _CELLS and self.in_cell:
                self.in_cell[-1] = False

    def _open(self, name: str) -> int:
        """The position of the innermost open ``name``, or -1."""
        open_at = self.positions.get(name)
        return open_at[-1] if open_at else -1

    def _reaches(self, index: int, kind: int) -> bool:
        """True if no element of ``kind`` is open above the one at ``index``."""
        return self.marks[-1][kind] <= index

    def end(self, name: str) -> None:
        """An end tag: close ``name`` and what it holds, unless html5ever may ignore the tag."""
        if self.stack and self.stack[-1] == name:
            # The common case: html5ever closes the current node by its own end tag.
            self.pop_to(len(self.stack) - 1)
            self._forget_formatting(name)
            return
        if self.tables and name in _TABLE_SECTIONS:
            self.pop_to(self.tables[-1] + 1)
            return
        if name == "form":
            # html5ever takes the form out of the middle of the stack and leaves what it holds
            # open, so the model keeps all of it.
            return
        index = max(self._open(h) for h in _HEADINGS) if name in _HEADINGS else self._open(name)
        if index < 0:
            # html5ever drops a formatting element that is no longer open from its list.
            self._forget_formatting(name)
            return
        if name == "table":
            closes = True
        elif name in _CELLS:
            closes = self.tables[-1] < index
        elif name == "p":
            closes = self._reaches(index, _STOPS_P)
        elif name == "li":
            closes = self._reaches(index, _STOPS_LI)
        elif name in _SPECIAL:
            closes = self._reaches(index, _STOPS_SPECIAL)
        else:
            # With a special element above it, a formatting element's end tag moves elements
            # around (the adoption agency) and leaves a copy in the list: count it still open.
            closes = self._reaches(index, _STOPS_OTHERS)
        if closes:
            self.pop_to(index)
            self._forget_formatting(name)

    def _forget_formatting(self, name: str) -> None:
        """One formatting element ``name`` fewer in the list, if the list holds one."""
        if self.formatting.get(name):
            self.formatting[name] -= 1
            self.formatting_total -= 1

    def start(self, name: str) -> None:
        """A start tag: open ``name``, closing first what html5ever certainly closes."""
        if name in _FORMATTING:
            if name == "a" and self.formatting.get("a"):
                # A new <a> ends the open one and takes it off the list.
                index = self._open("a")
                if index >= 0 and self._reaches(index, _STOPS_OTHERS):
                    self.pop_to(index)
                self._forget_formatting("a")
            self.formatting[name] = self.formatting.get(name, 0) + 1
            self.formatting_total += 1
        elif name in _CLOSES_P:
            index = self._open("p")
            if index >= 0 and self._reaches(index, _STOPS_P):
                self.pop_to(index)
            if name in _ITEMS:
                index = max(self._open(item) for item in _ITEMS[name])
                if index >= 0 and self._reaches(index, _STOPS_ITEM):
                    self.pop_to(index)
            if name in _HEADINGS and self.stack and self.stack[-1] in _HEADINGS:
                self.pop_to(len(self.stack) - 1)
        elif name in ("option", "optgroup") and self.stack and self.stack[-1] == "option":
            self.pop_to(len(self.stack) - 1)
        if self.tables:
            if name in _CELLS or name in _TABLE_SECTIONS:
                # A cell or a row ends the cell open in the same table.
                self.pop_to(self.tables[-1] + 1)
            elif self.in_table_proper() and name not in _TABLE_CONTENT:
                self.fostered += 1
        elif name in _CELLS:
            return  # ignored outside a table
        if name not in _VOID and name not in _NOT_STACKED:
            self.push(name)

    def text(self) -> None:
        """A run of text other than white space."""
        if self.in_table_proper():
            self.fostered += 1

    def in_table_proper(self) -> bool:
        """True in a table outside its cells, where html5ever fosters content out of the table.

        Formatting elements above the table may already be closed in html5ever, so they count
        as fostered too (they are themselves fostered when html5ever still has them open).
        """
        if not self.tables or self.in_cell[-1]:
            return False
        top = len(self.stack) - 1
        return top == self.tables[-1] or self.stack[top] in _FORMATTING

    def foreign(self) -> bool:
        """True inside SVG or MathML, where a <style> or <script> holds elements."""
        return self._open("svg") >= 0 or self._open("math") >= 0


@cache
def _stops(name: str) -> tuple[bool, bool, bool, bool, bool]:
    """Which kinds of end tag ``name`` stops, in the order of the fields of a stack entry."""
    others, special, p, li, item = (name in members for members in _KINDS)
    return others, special, p, li, item


def too_costly(fragment: str) -> str | None:
    """The first limit ``fragment`` exceeds for a linear parse in one piece, or None."""
    model = _Model()
    position = 0
    while match := _TOKEN.search(fragment, position):
        comment, slash, name, attributes = match.groups()
        # Text costs nothing outside tables (where it is fostered when misplaced).
        if model.tables and _NON_SPACE.search(fragment, position, match.start()):
            model.text()
        position = match.end()
        if comment:
            # "<!-->" and "<!--->" are whole comments; others run to "-->" (or the end).
            if fragment.startswith((">", "->"), position):
                continue
            closing = _COMMENT_END.search(fragment, position)
            if not closing:
                break
            position = closing.end()
            continue
        name = name.lower()
        if slash:
            model.end(name)
        else:
            # An attribute takes two characters at least, so only long tags need counting.
            if (
                len(attributes) > 2 * MAX_ATTRIBUTES
                and _attribute_count(attributes) > MAX_ATTRIBUTES
            ):
                return f"more than {MAX_ATTRIBUTES} attributes in a tag"
            model.start(name)
            if name in _RAW_TEXT and not model.foreign():
                closing = _RAW_TEXT_END[name].search(fragment, position)
                if not closing:
                    break
                position = closing.start()
        if len(model.stack) > MAX_DEPTH:
            return f"elements nested more than {MAX_DEPTH} deep"
        if model.formatting_total > MAX_FORMATTING:
            return f"more than {MAX_FORMATTING} unclosed formatting elements"
        if model.fostered > MAX_FOSTERED:
            return f"more than {MAX_FOSTERED} pieces of content misplaced in tables"
    return None


def _attribute_count(attributes: str) -> int:
    """How many attributes a tag's text after its name holds."""
    return sum(1 for _ in _ATTRIBUTE.finditer(attributes))
