"""Hostile markup in titles, summaries, bodies and feeds: cleaned in linear time, never raising.

No timings here (those live in bench/markup.py): the structural proof is that html.parser is gone
from the content package, that every body shape html5ever is quadratic on exceeds a limit of
markup_cost (so is cleaned in bounded pieces), and inputs that took minutes finish with the suite.
"""

from __future__ import annotations

import ast
import logging
import re
from pathlib import Path
from xml.sax.saxutils import escape

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter.content import sanitize
from newsletter.content.feed_formats import parse_feed
from newsletter.content.markup_cost import MAX_DEPTH, MAX_FORMATTING, too_costly
from newsletter.content.sanitize import clean_html, clean_title, html_to_text, summary_text
from tests.content.test_posts import XSS_VECTORS

CONTENT = Path(sanitize.__file__).parent
ARTICLES = Path(__file__).parents[1] / "data" / "articles"
ARTICLE_URL = "https://news.example.com/2026/11/26/water-board-delays-pipe-program/"

# 200 kB each: unterminated tags and quotes, comments, declarations, and deep unbalanced nesting
# (the last three are html5ever's own quadratic paths when given in one piece).
HOSTILE = {
    "unterminated tags": "<a" * 100_000,
    "unterminated quotes": "<a b='" * 33_000,
    "comment openers": "<!--" * 50_000,
    "marked sections": "<![CDATA[" * 22_000,
    "unclosed bold": "<b>" * 66_000,
    "bold then stray end tags": "<b>" * 20_000 + "</x>" * 35_000,
    "divs then stray paragraphs": "<div>" * 20_000 + "</p>" * 25_000,
    "formatting with distinct attributes": "".join(f"<b c{i}>x" for i in range(20_000)),
}
# An unterminated comment, tag or quote rightly swallows what follows it.
OPEN_TO_THE_END = {"unterminated tags", "unterminated quotes", "comment openers"}

_TOKENS = st.sampled_from(
    ["<", ">", "</", "<!--", "-->", "<!", "<![CDATA[", "]]>", "<?", "&", "&#", "&#x", ";", "'", '"',
     "=", " ", "\n", "<b>", "</b>", "<p>", "</p>", "<script>", "</script>", "<style>", "<a href=",
     "<br/>", "</x>", "&amp;", "&#8217;", "&nbsp;", "x", "é", "\x00", "\ud800"]
)  # fmt: skip
hostile_markup = st.lists(st.one_of(_TOKENS, st.text(max_size=5)), max_size=60).map("".join)


def test_the_content_package_does_not_use_html_parser() -> None:
    for module in CONTENT.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not any(name.startswith("html.parser") for name in names), module.name


@given(hostile_markup)
@settings(max_examples=300, deadline=None)
def test_any_markup_cleans_without_raising(value: str) -> None:
    text = html_to_text(value)
    assert text == text.strip() and "  " not in text
    assert "\ud800" not in text
    clean_title(value, 120)
    summary_text(value)
    clean_html(value, "https://news.example.com/")


def test_large_hostile_markup_finishes_and_is_plain_text() -> None:
    for name, value in HOSTILE.items():
        text = clean_title(value)
        assert len(text) <= 1000, name
        assert "<b" not in text and "<div" not in text, name
        if name not in OPEN_TO_THE_END:
            assert html_to_text(value + "<p>the end</p>").endswith("the end"), name


def test_text_is_whole_across_the_pieces_of_a_long_fragment() -> None:
    # Longer than a piece: the text between cuts is joined as if there were no cut.
    words = [f"word{n}" for n in range(4000)]
    fragment = "".join(f"<p>{w} <b>b&amp;d</b></p>" for w in words)
    assert len(fragment) > 4 * sanitize.TEXT_PIECE_CHARS
    assert html_to_text(fragment) == " ".join(f"{w} b&d" for w in words)
    unbroken = "x" * (3 * sanitize.TEXT_PIECE_CHARS)
    assert html_to_text(f"<p>{unbroken}</p>") == unbroken


def test_a_feed_with_hostile_titles_and_summaries_is_read() -> None:
    value = HOSTILE["bold then stray end tags"]
    document = (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>Hostile</title><item>'
        f"<title>{escape('Headline ' + value)}</title><link>https://news.example.com/a</link>"
        f"<description>{escape(value + '<p>Summary</p>')}</description></item></channel></rss>"
    ).encode()
    (entry,) = parse_feed(document, url="https://news.example.com/feed").entries
    assert entry.title == "Headline"
    assert entry.summary == "Summary"


# --- post bodies (clean_html) ---------------------------------------------------------------------

# Active content sprinkled through every hostile body: cleaning in pieces must remove it too.
ACTIVE = (
    '<script>alert(1)</script><img src="https://x.example/i.png" onerror="alert(2)">'
    '<a href="javascript:alert(3)" onclick="alert(4)">j</a>'
    '<p style="x" onmouseover="alert(5)">p</p>'
)


def _body(motif: str, size: int) -> str:
    """``motif`` repeated to ``size`` characters, with ACTIVE after every 40 of them."""
    unit = motif * 40 + ACTIVE
    return (unit * (size // len(unit) + 1))[:size]


# One shape per path of html5ever that is quadratic in one piece (see markup_cost), 200 kB-1 MB.
HOSTILE_BODIES = {
    "bold then stray end tags": "<b>" * 30_000 + _body("</x>", 200_000),
    "nested unclosed formatting": _body("<b><i><u>x", 300_000),
    "formatting with distinct attributes": "".join(f"<b c{i}>x" for i in range(30_000)) + ACTIVE,
    "deep divs": _body("<div>x", 1_000_000),
    "nested lists": _body("<ul><li>x", 400_000),
    "adoption agency": _body("<b><div>x</b>", 300_000),
    "content fostered out of tables": _body("<table>x</table>", 400_000),
    "nested tables": _body("<table><tr><td>x", 400_000),
    "list items in lists": _body("<li><ul></li>", 200_000),
    # A special element (here the obsolete <isindex>) stops a new item from closing the last.
    "list items under special elements": _body("<isindex><li>", 200_000),
    # </form> takes the form out of the stack and leaves what it holds open.
    "forms left holding elements": _body("<form><q></form>", 200_000),
    "many attributes": "<b " + " ".join(f"a{i}" for i in range(40_000)) + ">x" + ACTIVE,
    "many quoted attribute names": "<b "
    + " ".join(f'"a{i}"' for i in range(30_000))
    + ">"
    + ACTIVE,
}
_EVENT_HANDLER = re.compile(r"<[^>]*\son\w+\s*=", re.IGNORECASE)


def assert_safe(cleaned: str) -> None:
    """No script, event handler, inline style or javascript: URL survived cleaning."""
    lowered = cleaned.lower()
    for bad in ("<script", "javascript:", "style=", "<iframe", "<svg", "<style"):
        assert bad not in lowered, bad
    assert not _EVENT_HANDLER.search(cleaned)


@pytest.mark.parametrize("name", HOSTILE_BODIES)
def test_hostile_bodies_exceed_a_limit_and_clean_to_safe_html(
    name: str, caplog: pytest.LogCaptureFixture
) -> None:
    body = HOSTILE_BODIES[name]
    assert too_costly(body), name
    with caplog.at_level(logging.INFO, logger=sanitize.__name__):
        cleaned = clean_html(body, "https://news.example.com/")
    assert_safe(cleaned)
    # The structure of each piece is kept, and the log says so once.
    if not name.startswith("many"):
        assert "<b>" in cleaned or "<li>" in cleaned or "<p>" in cleaned, name
    assert len([r for r in caplog.records if "clean_html" in r.getMessage()]) == 1


@pytest.mark.parametrize("vector", XSS_VECTORS)
def test_active_content_is_removed_when_cleaned_in_pieces(vector: str) -> None:
    hostile = "<div>" * (MAX_DEPTH + 1)
    # The vector lands in every position relative to the cuts between pieces.
    body = "".join(hostile + "x" * shift + vector for shift in range(0, 2 * 1024, 97))
    assert too_costly(body)
    assert_safe(clean_html(body, "https://news.example.com/post/"))


def test_a_normal_article_is_cleaned_whole_as_before(caplog: pytest.LogCaptureFixture) -> None:
    # longform.clean.html is what clean_html gave before the limits: byte for byte the same.
    article = (ARTICLES / "longform.html").read_text()
    expected = (ARTICLES / "longform.clean.html").read_text().removesuffix("\n")
    assert clean_html(article, ARTICLE_URL) == expected
    # A long read of a dozen such sections (~70 kB, many pieces' worth) is parsed in one piece.
    with caplog.at_level(logging.INFO, logger=sanitize.__name__):
        clean_html(article * 12, ARTICLE_URL)
    assert too_costly(article * 12) is None
    assert not caplog.records


def test_sloppy_but_ordinary_markup_stays_under_the_limits() -> None:
    # Unclosed paragraphs and items, spans left open in paragraphs, an unclosed <b> or two.
    items = "<ul>" + "<li>item" * 2000 + "</ul>"
    paragraphs = "<div><p>para <span>open</div>" * 2000
    formatting = "<p><b>bold<p><i>italic" + "<p>text" * 2000
    tables = "<table><tr><td>a<td>b<tr><td>c</table>" * 500
    # A long alt text is one attribute however many words it has.
    alt = ('<img alt="' + "word " * 500 + '" src="https://x.example/i.png">') * 100
    for markup in (items, paragraphs, formatting, tables, alt):
        assert too_costly(markup) is None


def test_the_limits_of_nesting_and_formatting() -> None:
    assert too_costly("<div>" * MAX_DEPTH) is None
    assert too_costly("<div>" * (MAX_DEPTH + 1))
    assert too_costly("".join(f"<b c{i}>" for i in range(MAX_FORMATTING))) is None
    assert too_costly("".join(f"<b c{i}>" for i in range(MAX_FORMATTING + 1)))
    # Closed elements do not count; nor do tags in comments and scripts.
    assert too_costly("<div><b>x</b></div>" * 10_000) is None
    assert too_costly("<!--" + "<div>" * 1000 + "--><script>" + "<b>" * 1000 + "</script>") is None


def test_a_body_cleaned_in_pieces_keeps_every_paragraph_whole() -> None:
    # Too deep to parse whole; then paragraphs, each cut before, never inside.
    paragraphs = [f"paragraph {n} of the body" for n in range(3000)]
    body = "<div>" * (MAX_DEPTH + 1) + "".join(f"<p>{p}</p>" for p in paragraphs)
    cleaned = clean_html(body)
    assert html_to_text(cleaned) == " ".join(paragraphs)
    assert cleaned.count("<p>") == len(paragraphs)


_BODY_TOKENS = st.sampled_from(
    ["<b>", "</b>", "<i c=1>", "<div>", "</div>", "<table>", "</table>", "<td>", "<tr>", "<ul>",
     "<li>", "</p>", "<p>", "<svg>", "<math>", "<style>", "<script>", "</script>", "<!--", "-->",
     "<form>", "</form>", "<h2>", "</h3>", "<select>", "<option>", "<th>", "</td>", "<caption>",
     "</tr>", "<dd>", "<a href='javascript:x'>", "<img src=x onerror=y>", "x", " ", "&amp;", "<",
     ">", "'", '"']
)  # fmt: skip


@given(st.lists(_BODY_TOKENS, min_size=1, max_size=30), st.integers(1, 400))
@settings(max_examples=60, deadline=None)
def test_any_body_cleans_to_safe_html_without_raising(motif: list[str], repeat: int) -> None:
    cleaned = clean_html("".join(motif) * repeat, "https://news.example.com/")
    assert_safe(cleaned)
