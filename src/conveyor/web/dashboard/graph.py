"""A workflow's step graph laid out for an inline SVG: each step a box, each dependency an arrow.

Steps are placed left to right in columns by depth (a step sits one column right of the deepest step it
depends on), in the workflow's order within a column. Pure geometry, no I/O: the template draws it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

NODE_WIDTH = 150
NODE_HEIGHT = 34
COLUMN_GAP = 46
ROW_GAP = 14
MARGIN = 8
LABEL_CHARACTERS = 20


@dataclass(frozen=True, slots=True)
class Node:
    """One step's box: where it is, its name (``label`` shortened to fit), and its state's CSS class."""

    name: str
    label: str
    x: int
    y: int
    state: str
    detail: str


@dataclass(frozen=True, slots=True)
class Edge:
    """An arrow from a step to one that depends on it, as an SVG path."""

    source: str
    target: str
    path: str


@dataclass(frozen=True, slots=True)
class StepGraph:
    """Boxes, arrows and the size of the picture."""

    nodes: tuple[Node, ...]
    edges: tuple[Edge, ...]
    width: int
    height: int
    node_width: int = NODE_WIDTH
    node_height: int = NODE_HEIGHT


def lay_out(
    steps: Sequence[tuple[str, Sequence[str]]],
    states: Mapping[str, str] | None = None,
    details: Mapping[str, str] | None = None,
) -> StepGraph:
    """The graph of ``steps`` (each a name and the names it depends on, dependencies first), coloured by
    ``states`` (a step's state name; ``"defined"`` for steps it does not name) and titled by ``details``."""
    states = states or {}
    details = details or {}
    known = {name for name, _ in steps}
    column: dict[str, int] = {}
    for name, depends_on in steps:
        column[name] = 1 + max((column[dep] for dep in depends_on if dep in column), default=-1)
    rows_used: dict[int, int] = {}
    places: dict[str, tuple[int, int]] = {}
    for name, _ in steps:
        col = column[name]
        row = rows_used.get(col, 0)
        rows_used[col] = row + 1
        places[name] = (MARGIN + col * (NODE_WIDTH + COLUMN_GAP), MARGIN + row * (NODE_HEIGHT + ROW_GAP))
    nodes = tuple(
        Node(
            name=name,
            label=shorten(name, LABEL_CHARACTERS),
            x=places[name][0],
            y=places[name][1],
            state=states.get(name, "defined"),
            detail=details.get(name, ""),
        )
        for name, _ in steps
    )
    edges = tuple(
        Edge(dep, name, _arrow(places[dep], places[name]))
        for name, depends_on in steps
        for dep in depends_on
        if dep in known
    )
    columns = 1 + max(column.values(), default=-1)
    rows = max(rows_used.values(), default=0)
    width = 2 * MARGIN + max(columns, 1) * NODE_WIDTH + max(columns - 1, 0) * COLUMN_GAP
    height = 2 * MARGIN + max(rows, 1) * NODE_HEIGHT + max(rows - 1, 0) * ROW_GAP
    return StepGraph(nodes, edges, width, height)


def shorten(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, an ellipsis ending it where it was cut (for a drawn label)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _arrow(source: tuple[int, int], target: tuple[int, int]) -> str:
    x1, y1 = source[0] + NODE_WIDTH, source[1] + NODE_HEIGHT // 2
    x2, y2 = target[0] - 4, target[1] + NODE_HEIGHT // 2
    bend = (x2 - x1) // 2
    return f"M{x1},{y1} C{x1 + bend},{y1} {x2 - bend},{y2} {x2},{y2}"
