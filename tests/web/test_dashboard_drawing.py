"""The dashboard's pure drawing: step graphs laid out by dependency, bar charts to scale, timelines built
from events, and the formatting of times and durations."""

from __future__ import annotations

import datetime as dt

import pytest

from conveyor import Event
from conveyor.web.dashboard.charts import PLOT_WIDTH, Part, bar_chart
from conveyor.web.dashboard.graph import COLUMN_GAP, NODE_WIDTH, lay_out
from conveyor.web.dashboard.rendering import json_text, seconds, when
from conveyor.web.dashboard.timeline import LABEL_WIDTH, RUN_LANE, build_timeline
from conveyor.web.dashboard.timeline import PLOT_WIDTH as TIMELINE_WIDTH


def test_a_fork_and_join_are_laid_out_in_columns_by_depth() -> None:
    """Branches of a fork share a column below each other; the join sits one column right of both."""
    graph = lay_out(
        [("start", ()), ("left", ("start",)), ("right", ("start",)), ("join", ("left", "right"))],
        {"start": "completed", "left": "failed"},
    )
    places = {node.name: (node.x, node.y) for node in graph.nodes}
    step = NODE_WIDTH + COLUMN_GAP
    assert places["left"][0] == places["right"][0] == places["start"][0] + step
    assert places["left"][1] < places["right"][1]
    assert places["join"][0] == places["left"][0] + step
    assert [(edge.source, edge.target) for edge in graph.edges] == [
        ("start", "left"),
        ("start", "right"),
        ("left", "join"),
        ("right", "join"),
    ]
    states = {node.name: node.state for node in graph.nodes}
    assert states == {"start": "completed", "left": "failed", "right": "defined", "join": "defined"}
    assert graph.width == 16 + 3 * NODE_WIDTH + 2 * COLUMN_GAP


def test_a_long_step_name_is_shortened_on_its_box_and_kept_whole_in_its_title() -> None:
    """A name too long for its box is cut with an ellipsis; the node keeps the whole name."""
    name = "reserve_every_item_of_the_order_in_the_warehouse"
    (node,) = lay_out([(name, ())]).nodes
    assert node.name == name
    assert node.label.endswith("…")
    assert len(node.label) == 20


def test_bars_are_drawn_to_scale_and_stacked() -> None:
    """The longest bar fills the plot; stacked parts follow each other; a zero part draws nothing."""
    chart = bar_chart(
        "runs",
        [
            ("a", [Part(3, "ok", "3 ok"), Part(1, "bad", "1 bad")], "4"),
            ("b", [Part(2, "ok", "2 ok"), Part(0, "bad", "0 bad")], "2"),
        ],
    )
    first, second = chart.bars
    assert sum(segment.width for segment in first.segments) == PLOT_WIDTH
    assert first.segments[1].x == first.segments[0].x + first.segments[0].width
    assert len(second.segments) == 1
    assert second.segments[0].width == PLOT_WIDTH / 2


def test_a_chart_with_a_fixed_maximum_scales_to_it() -> None:
    """A score out of 100 is drawn against 100, not against the best score."""
    (bar,) = bar_chart("health", [("a", [Part(50, "fair", "50")], "50")], maximum=100).bars
    assert bar.segments[0].width == PLOT_WIDTH / 2


def _event(
    seq: int, kind: str, at: float, step: str | None = None, attempt: int | None = None, **data: object
) -> Event:
    return Event("run-1", seq, kind, at, "checkout", "c-1", step, attempt, None, data)


def test_a_timeline_has_a_bar_per_attempt_coloured_by_its_outcome_and_marks_for_the_rest() -> None:
    """A retried, then timed-out, then completed step gives three bars; undos and signals are marks."""
    events = [
        _event(1, "run.started", 100.0),
        _event(2, "step.started", 100.0, "charge", 1),
        _event(3, "step.failed", 100.5, "charge", 1, final=False, message="boom", duration_seconds=0.5),
        _event(4, "step.started", 101.0, "charge", 2),
        _event(5, "step.timed_out", 102.0, "charge", 2, message="too slow"),
        _event(6, "step.failed", 102.0, "charge", 2, final=False, duration_seconds=1.0),
        _event(7, "step.started", 103.0, "charge", 3),
        _event(8, "step.completed", 103.5, "charge", 3, duration_seconds=0.5),
        _event(9, "signal.received", 104.0, name="approved", signal_id=1),
        _event(10, "undo.completed", 105.0, "reserve", 1),
        _event(11, "run.compensated", 110.0, duration_seconds=10.0),
    ]
    timeline = build_timeline(events, now=200.0, step_order=["reserve", "charge"])
    assert timeline.lanes == (RUN_LANE, "reserve", "charge")
    assert [bar.outcome for bar in timeline.bars] == ["retried", "timed_out", "completed"]
    assert all(bar.lane == 2 for bar in timeline.bars)
    assert timeline.bars[0].title == "charge attempt 1: failed, retried after 0.500 s: boom"
    first, second = timeline.bars[:2]
    assert first.x == LABEL_WIDTH
    assert second.x == pytest.approx(LABEL_WIDTH + TIMELINE_WIDTH / 10, abs=0.01)  # 1 s of 10 s
    assert [(mark.lane, mark.kind) for mark in timeline.marks] == [
        (0, "start"),
        (0, "signal"),
        (1, "undo"),
        (0, "compensation"),
    ]
    assert timeline.span_seconds == 10.0


def test_a_wait_still_open_is_drawn_up_to_now() -> None:
    """A step waiting for a signal is a waiting bar from the wait's start to now."""
    events = [
        _event(1, "run.started", 100.0),
        _event(2, "step.waiting", 101.0, "approved", 0, until=None),
    ]
    (bar,) = build_timeline(events, now=111.0).bars
    assert bar.outcome == "waiting"
    assert bar.width == pytest.approx(TIMELINE_WIDTH * 10 / 11, abs=0.01)


def test_times_and_durations_read_at_a_glance() -> None:
    """Durations in the unit that fits; moments in UTC; long values cut and said so."""
    assert [seconds(value) for value in (None, 0.0004, 0.25, 12.44, 185, 7440)] == [
        "-",
        "0.40 ms",
        "250 ms",
        "12.4 s",
        "3 min 5 s",
        "2 h 4 min",
    ]
    moment = dt.datetime(2026, 12, 1, 19, 20, 49, tzinfo=dt.UTC)
    assert when(moment) == when(moment.timestamp()) == "2026-12-01 19:20:49 UTC"
    assert when(None) == "-"
    text = json_text({"items": ["x" * 100] * 100})
    assert text.endswith("more characters)")
