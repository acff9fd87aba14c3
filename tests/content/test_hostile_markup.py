"""Hostile markup in titles, summaries and feeds: cleaned in linear time, never an exception.

No timings here (those live in bench/markup.py): the structural proof is that html.parser is gone
from the content package, and inputs that took the old parser minutes finish with the suite.
"""

from __future__ import annotations

import ast
from pathlib import Path
from xml.sax.saxutils import escape

from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter.content import sanitize
from newsletter.content.feed_formats import parse_feed
from newsletter.content.sanitize import clean_html, clean_title, html_to_text, summary_text

CONTENT = Path(sanitize.__file__).parent

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
