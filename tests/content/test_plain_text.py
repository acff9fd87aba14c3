"""The text part of HTML bodies: structure kept, lines wrapped, URLs whole, any input linear."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter.content.plain_text import WIDTH, html_to_plain_text
from newsletter.content.sanitize import clean_html
from tests.content.test_hostile_markup import HOSTILE, hostile_markup


def text(fragment: str) -> str:
    """The plain text of a fragment, cleaned first as every campaign body is."""
    return html_to_plain_text(clean_html(fragment, "https://news.example.com/"))


def test_headings_and_paragraphs_stand_apart() -> None:
    assert text("<h1>Half price</h1><p>All weekend.</p>") == "HALF PRICE\n\nAll weekend."
    assert text("<h3>The small print</h3><p>One.</p><p>Two.</p>") == (
        "The small print\n---------------\n\nOne.\n\nTwo."
    )


def test_lists_get_bullets_and_numbers() -> None:
    got = text(
        "<p>Included:</p><ul><li>Every article</li><li>The app<ul><li>offline</li></ul></li>"
        "</ul><ol><li>Sign up</li><li>Read</li></ol><p>Done.</p>"
    )
    assert got == (
        "Included:\n\n* Every article\n* The app\n  * offline\n\n1. Sign up\n2. Read\n\nDone."
    )


def test_links_keep_their_address() -> None:
    got = text(
        '<p>See <a href="https://news.example.com/offer?a=1&amp;b=2">the offer</a>, '
        '<a href="https://news.example.com/">news.example.com</a> or '
        '<a href="mailto:desk@news.example.com">write to us</a>.</p>'
    )
    assert got == (
        "See the offer (https://news.example.com/offer?a=1&b=2),\n"
        "https://news.example.com/ or write to us (desk@news.example.com)."
    )


def test_long_paragraphs_wrap_but_urls_never_break() -> None:
    url = "https://news.example.com/2024/07/" + "very-long-slug-" * 8
    body = "<p>" + "All the news that fits, and some more. " * 6 + f'<a href="{url}">{url}</a></p>'
    body += "<ul><li>" + "a list item that goes on " * 6 + "</li></ul>"
    lines = text(body).splitlines()
    assert url in lines
    for line in lines:
        assert len(line) <= WIDTH or line == url, line
    assert any(line.startswith("* a list item") for line in lines)
    assert any(line.startswith("  ") and "list item" in line for line in lines)  # hanging indent


def test_quotes_breaks_rules_images_and_code() -> None:
    got = text(
        "<blockquote><p>Worth it.</p></blockquote><p>Line one<br>line two</p><hr>"
        '<p><img src="https://news.example.com/chart.png" alt="A chart"></p>'
        "<pre>  indented\n    code</pre>"
    )
    assert got == (
        "> Worth it.\n\nLine one\nline two\n\n--------------------\n\n[A chart]\n\n"
        "  indented\n    code"
    )


def test_entities_are_characters_and_markup_never_leaks() -> None:
    got = text("<p>Caf&eacute; &amp; bar &lt;b&gt; &#8217;s<script>alert(1)</script></p>")
    assert got == "Café & bar <b> \u2019s"


def test_hostile_markup_finishes_with_bounded_output() -> None:
    # Raw, and well-formed as clean_html writes it (cleaning these is sanitize's own concern).
    shapes = {
        **HOSTILE,
        "deep lists": "<ul><li>x" * 20_000,
        "deep lists, closed": "<ul><li>x" * 20_000 + "</li></ul>" * 20_000,
        "deep quotes": "<blockquote>q" * 20_000 + "</blockquote>" * 20_000,
        "many links": '<a href="https://e.com/">x</a>' * 20_000,
        "long word": "<p>" + "x" * 200_000 + "</p>",
    }
    for name, fragment in shapes.items():
        got = html_to_plain_text(fragment)
        # Indentation stops growing after a few levels: the output is linear in the input.
        assert len(got) <= 12 * len(fragment) + 100, name
        assert max(map(len, got.splitlines() or [""])) <= max(WIDTH, 200_000), name


@given(hostile_markup)
@settings(max_examples=300, deadline=None)
def test_any_markup_converts_without_raising(value: str) -> None:
    for fragment in (value, clean_html(value)):
        got = html_to_plain_text(fragment)
        for line in got.splitlines():
            assert len(line) <= WIDTH or " " not in line.strip().lstrip("*>0123456789. "), line
        assert not re.search(r"[ \t]$", got, re.M)


@given(st.lists(st.sampled_from(["<p>", "</p>", "<li>", "<ul>", "</ul>", "<b>", "word "])))
@settings(max_examples=200, deadline=None)
def test_cleaned_markup_loses_no_word(tokens: list[str]) -> None:
    fragment = clean_html("".join(tokens))
    assert html_to_plain_text(fragment).count("word") == fragment.count("word")
