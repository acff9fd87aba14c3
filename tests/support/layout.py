"""Layout checks for the Chromium tests: what sticks out, and where the boxes are.

Each is a JavaScript function for ``page.evaluate``; the assertions stay in the tests.
"""

from __future__ import annotations

from typing import Any

from playwright.sync_api import Locator

# Every element that sticks out past the right edge of the viewport (a phone scrolls sideways).
TOO_WIDE = """() => Array.from(document.querySelectorAll("body *"))
  .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
  .map(e => e.tagName.toLowerCase() + "." + e.className)"""


def boxes(locator: Locator) -> list[dict[str, Any]]:
    """The bounding boxes (x, y, width, height) of every element ``locator`` matches."""
    found = [element.bounding_box() for element in locator.all()]
    assert all(box is not None for box in found), "an element is not rendered"
    return [box for box in found if box is not None]


def rows(found: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Boxes grouped into rows by their top edge (within a pixel), top to bottom."""
    grouped: dict[int, list[dict[str, Any]]] = {}
    for box in found:
        grouped.setdefault(round(box["y"]), []).append(box)
    return [sorted(row, key=lambda b: b["x"]) for _, row in sorted(grouped.items())]
