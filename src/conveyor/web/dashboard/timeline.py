"""A run's history drawn as a timeline: a lane per step with a bar per attempt, and marks for the rest.

Each attempt's bar runs from its ``step.started`` for its recorded duration and is coloured by what it
came to: completed, failed and retried, failed for good, timed out, or still waiting (a sleep or a wait
for a signal, drawn up to now). Undos are marks on their step's lane; signals, pauses, cancel requests,
retries by hand, take-overs and the run's end are marks on the run's own lane. Pure: events in, geometry
out (the run page's template draws it, and lists every event below it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from conveyor.core.history import Event, EventKind

LABEL_WIDTH = 170
PLOT_WIDTH = 760
LANE_HEIGHT = 24
BAR_HEIGHT = 14
TOP = 24
RUN_LANE = "(run)"

_STEP_ENDS = {EventKind.STEP_COMPLETED.value, EventKind.STEP_FAILED.value}
_RUN_MARKS = {
    EventKind.RUN_STARTED.value: "start",
    EventKind.RUN_TAKEN_OVER.value: "takeover",
    EventKind.RUN_RETRIED.value: "retry",
    EventKind.RUN_COMPENSATING.value: "compensation",
    EventKind.RUN_COMPLETED.value: "completed",
    EventKind.RUN_FAILED.value: "failed",
    EventKind.RUN_COMPENSATED.value: "compensation",
    EventKind.RUN_COMPENSATION_FAILED.value: "failed",
    EventKind.RUN_CANCELLED.value: "cancel",
    EventKind.RUN_DEAD_LETTERED.value: "failed",
    EventKind.RUN_CANCEL_REQUESTED.value: "cancel",
    EventKind.RUN_COMPENSATION_REQUESTED.value: "compensation",
    EventKind.RUN_PAUSED.value: "pause",
    EventKind.RUN_RESUMED.value: "pause",
    EventKind.SIGNAL_RECEIVED.value: "signal",
    EventKind.OPERATOR_ACTION.value: "retry",
}


@dataclass(frozen=True, slots=True)
class AttemptBar:
    """One attempt at a step: its lane, where it is drawn, its outcome (a CSS class) and its title."""

    lane: int
    x: float
    y: float
    width: float
    outcome: str
    title: str


@dataclass(frozen=True, slots=True)
class Mark:
    """One moment: an undo on its step's lane, or a run-level event (a signal, a pause...) on the run's."""

    lane: int
    x: float
    y: float
    kind: str
    title: str


@dataclass(frozen=True, slots=True)
class Timeline:
    """Lanes (the run's first, then each step's), bars, marks, and the span of time drawn."""

    lanes: tuple[str, ...]
    bars: tuple[AttemptBar, ...]
    marks: tuple[Mark, ...]
    started_at: float
    span_seconds: float
    width: int
    height: int
    label_width: int = LABEL_WIDTH
    plot_width: int = PLOT_WIDTH
    lane_height: int = LANE_HEIGHT
    top: int = TOP

    def lane_y(self, index: int) -> int:
        """The top of lane ``index``."""
        return self.top + index * self.lane_height


@dataclass
class _Open:
    step: str
    attempt: int
    begin: float
    outcome: str = "running"
    message: str = ""


def build_timeline(events: Sequence[Event], *, now: float, step_order: Sequence[str] = ()) -> Timeline:
    """The timeline of ``events`` (a run's history, oldest first); attempts still open are drawn up to
    ``now``. Steps are laned in ``step_order``, then any others in the order they first appear."""
    lanes = [RUN_LANE, *step_order]
    for event in events:
        if event.step is not None and event.step not in lanes:
            lanes.append(event.step)
    lane_of = {name: index for index, name in enumerate(lanes)}
    spans: list[tuple[_Open, float]] = []
    moments: list[tuple[str, float, str, str]] = []  # lane name, at, kind, title
    open_attempts: dict[str, _Open] = {}
    waiting_since: dict[str, float] = {}
    for event in events:
        kind, step = event.kind, event.step
        if step is None:
            mark = _RUN_MARKS.get(kind)
            if mark is not None:
                moments.append((RUN_LANE, event.at, mark, _describe(event)))
            continue
        if kind == EventKind.STEP_WAITING.value:
            waiting_since[step] = event.at
        elif kind == EventKind.STEP_STARTED.value:
            open_attempts[step] = _Open(step, event.attempt or 1, event.at)
        elif kind == EventKind.STEP_TIMED_OUT.value and step in open_attempts:
            open_attempts[step].outcome = "timed_out"
        elif kind in _STEP_ENDS:
            attempt = open_attempts.pop(step, None) or _Open(step, event.attempt or 1, event.at)
            waiting_since.pop(step, None)
            duration = event.data.get("duration_seconds")
            end = attempt.begin + duration if isinstance(duration, int | float) else event.at
            if kind == EventKind.STEP_COMPLETED.value:
                attempt.outcome = "completed"
            elif attempt.outcome != "timed_out":
                attempt.outcome = "failed" if event.data.get("final") else "retried"
            attempt.message = event.error_message or ""
            spans.append((attempt, end))
        elif kind in (EventKind.UNDO_COMPLETED.value, EventKind.UNDO_FAILED.value):
            moments.append(
                (
                    step,
                    event.at,
                    "undo" if kind == EventKind.UNDO_COMPLETED else "undo_failed",
                    _describe(event),
                )
            )
        elif kind in (EventKind.STEP_SKIPPED.value, EventKind.STEP_RESET.value):
            moments.append(
                (step, event.at, "retry" if kind == EventKind.STEP_RESET else "skip", _describe(event))
            )
    for attempt in open_attempts.values():
        spans.append((attempt, now))
    for step, since in waiting_since.items():
        if step not in open_attempts:
            spans.append((_Open(step, 1, since, "waiting"), now))
    times = [event.at for event in events] + [end for _, end in spans]
    start = min(times, default=now)
    span = max(max(times, default=now) - start, 1e-3)
    scale = PLOT_WIDTH / span

    def x_of(at: float) -> float:
        return round(LABEL_WIDTH + (at - start) * scale, 2)

    bars = tuple(
        AttemptBar(
            lane=lane_of[attempt.step],
            x=x_of(attempt.begin),
            y=TOP + lane_of[attempt.step] * LANE_HEIGHT + (LANE_HEIGHT - BAR_HEIGHT) / 2,
            width=round(max((end - attempt.begin) * scale, 3.0), 2),
            outcome=attempt.outcome,
            title=_attempt_title(attempt, end),
        )
        for attempt, end in spans
    )
    marks = tuple(
        Mark(lane_of[lane], x_of(at), TOP + lane_of[lane] * LANE_HEIGHT + LANE_HEIGHT / 2, kind, title)
        for lane, at, kind, title in moments
    )
    height = TOP + len(lanes) * LANE_HEIGHT + 8
    return Timeline(tuple(lanes), bars, marks, start, span, LABEL_WIDTH + PLOT_WIDTH + 20, height)


_OUTCOME_WORDS = {
    "completed": "completed",
    "retried": "failed, retried",
    "failed": "failed for good",
    "timed_out": "timed out",
    "running": "running",
    "waiting": "waiting",
}


def _attempt_title(attempt: _Open, end: float) -> str:
    words = _OUTCOME_WORDS.get(attempt.outcome, attempt.outcome)
    text = f"{attempt.step} attempt {attempt.attempt}: {words} after {end - attempt.begin:.3f} s"
    return f"{text}: {attempt.message}" if attempt.message else text


def _describe(event: Event) -> str:
    data = event.data
    parts = [event.kind]
    if event.step:
        parts.append(event.step)
    for key in ("name", "action", "by", "reason", "message"):
        value = data.get(key)
        if isinstance(value, str) and value:
            parts.append(f"{key}={value}")
    return " ".join(parts)
