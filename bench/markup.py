"""Hostile markup: plain text from titles and from campaign bodies (the text part) at 10, 40 and
160 kB, clean_html at 25, 100 and 400 kB.

Each line gives the time for each size of one shape and the ratio from one size to the next:
linear growth shows as a ratio near 4 (quadratic would be near 16).

    python bench/markup.py [--html-only] [--repeat N]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from itertools import pairwise

from newsletter.content.plain_text import html_to_plain_text
from newsletter.content.sanitize import clean_html, clean_title

Shapes = dict[str, Callable[[int], str]]

TITLE_SIZES_KB = (10, 40, 160)
TITLE_SHAPES: Shapes = {
    "<a<a<a": lambda n: ("<a" * n)[:n],
    "<a b='": lambda n: ("<a b='" * n)[:n],
    "<!--": lambda n: ("<!--" * n)[:n],
    "<b> x n": lambda n: ("<b>" * n)[:n],
    "<b>... </x>...": lambda n: "<b>" * (n // 6) + "</x>" * (n // 8),
    "<div>... </p>...": lambda n: "<div>" * (n // 10) + "</p>" * (n // 8),
    "<b cN>x": lambda n: "".join(f"<b c{i}>x" for i in range(n // 10)),
    "<ul><li>x ...": lambda n: "<ul><li>x" * (n // 9),
    "<a href>x</a>": lambda n: '<a href="https://e.com/">x</a>' * (n // 30),
}
HTML_SIZES_KB = (25, 100, 400)
# One line per path of html5ever that is quadratic in one piece (see newsletter/content/
# markup_cost.py), plus a normal article for scale.
HTML_SHAPES: Shapes = {
    "article": lambda n: ('<p>Some <a href="https://e.example/x">text</a>, <em>more</em>.</p>' * n)[
        :n
    ],
    "<b>... </x>...": lambda n: "<b>" * (n // 6) + "</x>" * (n // 8),
    "<b><i><u>x": lambda n: ("<b><i><u>x" * n)[:n],
    "<b cN>x": lambda n: "".join(f"<b c{i}>x" for i in range(n // 10)),
    "<div>...": lambda n: ("<div>x" * n)[:n],
    "<ul><li>...": lambda n: ("<ul><li>x" * n)[:n],
    "<b><div>x</b>": lambda n: ("<b><div>x</b>" * n)[:n],
    "<table>x</table>": lambda n: ("<table>x</table>" * n)[:n],
    "<table><tr><td>": lambda n: ("<table><tr><td>x" * n)[:n],
    "<b a0 a1 ...>": lambda n: "<b " + " ".join(f"a{i}" for i in range(n // 7)) + ">x",
}


def seconds(clean: Callable[[str], object], value: str, repeat: int) -> float:
    """The best of ``repeat`` runs of ``clean`` on ``value``."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        clean(value)
        best = min(best, time.perf_counter() - started)
    return best


def table(
    title: str, clean: Callable[[str], object], shapes: Shapes, sizes: tuple[int, ...], repeat: int
) -> None:
    """Print one line per shape: the time at each size and the ratio to the size before."""
    print(f"{title:18}" + "".join(f"{f'{kb} kB':>12}" for kb in sizes) + "   ratios")
    for name, make in shapes.items():
        times = [seconds(clean, make(kb * 1024), repeat) for kb in sizes]
        ratios = "  ".join(f"{b / a:4.1f}" for a, b in pairwise(times))
        print(f"{name:18}" + "".join(f"{t * 1000:10.1f}ms" for t in times) + f"   {ratios}")


def main() -> None:
    """Print the clean_title and html_to_plain_text tables, then the clean_html table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--html-only", action="store_true", help="only the clean_html table")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case; the best is kept")
    args = parser.parse_args()
    if not args.html_only:
        table("clean_title", clean_title, TITLE_SHAPES, TITLE_SIZES_KB, args.repeat)
        print()
        table("html_to_plain_text", html_to_plain_text, TITLE_SHAPES, TITLE_SIZES_KB, args.repeat)
        print()
    table("clean_html", clean_html, HTML_SHAPES, HTML_SIZES_KB, args.repeat)


if __name__ == "__main__":
    main()
