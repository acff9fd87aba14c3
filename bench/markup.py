"""Plain text from hostile markup: the time for 10, 40 and 160 kB of each shape, and the ratios,
for titles (clean_title) and for the text part of campaign bodies (html_to_plain_text).

Linear growth shows as a ratio near 4 from one size to the next (quadratic would be near 16).

    python bench/markup.py
"""

from __future__ import annotations

import time
from collections.abc import Callable
from itertools import pairwise

from newsletter.content.plain_text import html_to_plain_text
from newsletter.content.sanitize import clean_title

SIZES_KB = (10, 40, 160)
SHAPES: dict[str, Callable[[int], str]] = {
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
CONVERTERS: dict[str, Callable[[str], str]] = {
    "clean_title": clean_title,
    "html_to_plain_text": html_to_plain_text,
}


def seconds(convert: Callable[[str], str], value: str, repeat: int = 3) -> float:
    """The best of ``repeat`` runs of ``convert`` on ``value``."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        convert(value)
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    """Print one line per shape: the time at each size and the ratio to the size before."""
    for label, convert in CONVERTERS.items():
        print(f"{label:18}" + "".join(f"{f'{kb} kB':>12}" for kb in SIZES_KB) + "   ratios")
        for name, make in SHAPES.items():
            times = [seconds(convert, make(kb * 1024)) for kb in SIZES_KB]
            ratios = "  ".join(f"{b / a:4.1f}" for a, b in pairwise(times))
            print(f"{name:18}" + "".join(f"{t * 1000:10.2f}ms" for t in times) + f"   {ratios}")
        print()


if __name__ == "__main__":
    main()
