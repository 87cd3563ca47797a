"""Horizontal bar charts for inline SVG: one row per label, each bar one or more coloured segments.

Pure geometry (the analytics template draws it): the longest bar fills the plot, the others are to scale,
and each segment keeps a title (its value in words) for the tooltip and for screen readers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from conveyor.web.dashboard.graph import shorten

LABEL_WIDTH = 230
PLOT_WIDTH = 520
VALUE_WIDTH = 110
ROW_HEIGHT = 24
BAR_HEIGHT = 16
TOP = 6
LABEL_CHARACTERS = 34


@dataclass(frozen=True, slots=True)
class Part:
    """One piece of a bar as given: its value, its CSS class, and what it says in words."""

    value: float
    css_class: str
    title: str


@dataclass(frozen=True, slots=True)
class Segment:
    """One piece of a bar as drawn."""

    x: float
    width: float
    css_class: str
    title: str


@dataclass(frozen=True, slots=True)
class Bar:
    """One row: its label, where it is drawn, its segments, and the total written after it."""

    label: str
    full_label: str
    y: float
    text_y: float
    segments: tuple[Segment, ...]
    value_text: str
    value_x: float


@dataclass(frozen=True, slots=True)
class BarChart:
    """A titled chart of bars, with the picture's size."""

    title: str
    bars: tuple[Bar, ...]
    width: int
    height: int
    label_width: int = LABEL_WIDTH


def bar_chart(
    title: str, rows: Sequence[tuple[str, Sequence[Part], str]], *, maximum: float | None = None
) -> BarChart:
    """A chart of ``rows``, each a label, its parts (stacked left to right) and the total's text; the
    plot's full width stands for ``maximum`` (a score out of 100, say), else for the longest bar."""
    largest = maximum or max((sum(part.value for part in parts) for _, parts, _ in rows), default=0.0)
    scale = PLOT_WIDTH / largest if largest > 0 else 0.0
    bars = []
    for index, (label, parts, value_text) in enumerate(rows):
        y = TOP + index * ROW_HEIGHT
        x = float(LABEL_WIDTH)
        segments = []
        for part in parts:
            width = max(part.value, 0.0) * scale
            if width > 0:
                segments.append(Segment(round(x, 2), round(max(width, 1.0), 2), part.css_class, part.title))
            x += width
        bars.append(
            Bar(
                label=shorten(label, LABEL_CHARACTERS),
                full_label=label,
                y=y,
                text_y=y + BAR_HEIGHT - 4,
                segments=tuple(segments),
                value_text=value_text,
                value_x=round(x + 6, 2),
            )
        )
    height = 2 * TOP + max(len(rows), 1) * ROW_HEIGHT
    return BarChart(title, tuple(bars), LABEL_WIDTH + PLOT_WIDTH + VALUE_WIDTH, height)
