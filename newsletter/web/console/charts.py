"""Server-side SVG charts for the dashboard: the geometry here, the markup in
``templates/web/console/_charts.html``. No script: a chart is drawn before the page arrives,
and each comes with its numbers as a table for screen readers."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

WIDTH = 720
HEIGHT = 220
LEFT = 56  # room for the y labels (drawn larger on a phone)
RIGHT = 8
TOP = 10
BOTTOM = 26  # room for the x labels
TICKS = 4


@dataclass(frozen=True)
class Tick:
    """A y-axis line at ``y`` labelled ``label``."""

    y: float
    label: str


@dataclass(frozen=True)
class XLabel:
    """A date under the axis, centred on ``x``."""

    x: float
    label: str


@dataclass(frozen=True)
class Bar:
    """One bar; ``series`` names its colour class, ``title`` what it shows (a tooltip)."""

    x: float
    y: float
    width: float
    height: float
    series: str
    title: str


@dataclass(frozen=True)
class Chart:
    """What the template draws: bars or a line, on an axis with ticks and dates."""

    width: int
    height: int
    left: int
    plot_right: float
    baseline: float
    ticks: list[Tick]
    x_labels: list[XLabel]
    bars: list[Bar]
    line: str  # polyline points, "x,y x,y …" (empty for a bar chart)
    area: str  # the closed path under the line


def nice_max(value: int) -> int:
    """The smallest multiple of :data:`TICKS` steps of 1, 2 or 5 * 10**n at or above ``value``."""
    if value <= 0:
        return TICKS
    step = value / TICKS
    magnitude = 10 ** math.floor(math.log10(step))
    for factor in (1, 2, 5, 10):
        if factor * magnitude >= step:
            nice_step = max(1, math.ceil(factor * magnitude))
            return nice_step * TICKS
    return value  # unreachable: 10 * magnitude >= step


def _label(day: date) -> str:
    return f"{day.day} {day:%b}"


def _frame(days: Sequence[date], top: int) -> tuple[float, float, list[Tick], list[XLabel]]:
    plot_width = WIDTH - LEFT - RIGHT
    plot_height = HEIGHT - TOP - BOTTOM
    slot = plot_width / max(1, len(days))
    ticks = [
        Tick(TOP + plot_height * (1 - n / TICKS), f"{top * n // TICKS:,}") for n in range(TICKS + 1)
    ]
    # A date every week, ending with the last day shown.
    labels = [
        XLabel(LEFT + slot * (i + 0.5), _label(day))
        for i, day in enumerate(days)
        if (len(days) - 1 - i) % 7 == 0
    ]
    return slot, plot_height, ticks, labels


def bar_chart(days: Sequence[date], series: Sequence[tuple[str, str, Sequence[int]]]) -> Chart:
    """Bars side by side for each day: ``series`` is (css name, what it counts, values)."""
    top = nice_max(max((max(values, default=0) for _, _, values in series), default=0))
    slot, plot_height, ticks, labels = _frame(days, top)
    gap = slot * 0.2
    width = (slot - gap) / max(1, len(series))
    bars = []
    for i, day in enumerate(days):
        for n, (name, noun, values) in enumerate(series):
            value = values[i]
            height = plot_height * value / top
            bars.append(
                Bar(
                    x=round(LEFT + slot * i + gap / 2 + width * n, 2),
                    y=round(TOP + plot_height - height, 2),
                    width=round(width, 2),
                    height=round(height, 2),
                    series=name,
                    title=f"{_label(day)}: {value:,} {noun}",
                )
            )
    return Chart(WIDTH, HEIGHT, LEFT, WIDTH - RIGHT, TOP + plot_height, ticks, labels, bars, "", "")


def line_chart(days: Sequence[date], values: Sequence[int]) -> Chart:
    """A line through one value a day, with the area under it shaded."""
    top = nice_max(max(values, default=0))
    slot, plot_height, ticks, labels = _frame(days, top)
    points = [
        (round(LEFT + slot * (i + 0.5), 2), round(TOP + plot_height * (1 - v / top), 2))
        for i, v in enumerate(values)
    ]
    line = " ".join(f"{x},{y}" for x, y in points)
    baseline = TOP + plot_height
    area = ""
    if points:
        area = (
            f"M{points[0][0]},{baseline} L"
            + " L".join(f"{x},{y}" for x, y in points)
            + f" L{points[-1][0]},{baseline} Z"
        )
    return Chart(WIDTH, HEIGHT, LEFT, WIDTH - RIGHT, baseline, ticks, labels, [], line, area)
