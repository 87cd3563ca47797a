"""The analytics figures computed in Python, over the rows :class:`~conveyor.backends.memory.InMemoryBackend`
keeps: the same figures the SQL backends compute in their databases (see :mod:`conveyor.core.analytics`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from conveyor.core.analytics import FINAL_STATE_NAMES, AnalyticsQuery, RunFigures, StepFigures, nearest_rank

_NUMBERS = (int, float)


class FinishedRun(NamedTuple):
    """What the figures read of one finished run: its workflow, final state, times and step rows."""

    workflow_name: str
    state: str
    created_at: float
    finished_at: float
    steps: Sequence[Sequence[Any]]
    """Its recorded steps' rows (see :data:`conveyor.backends.rows.StepRow`)."""


def _executions(run: FinishedRun) -> Iterable[tuple[str, str, int, float | None]]:
    """(step name, state, attempts, duration) of each step of ``run`` that ran at least once."""
    for row in run.steps:
        name, state, attempts, started, finished = row[0], row[1], row[2], row[6], row[7]
        if type(attempts) is not int or attempts <= 0:
            continue
        timed = type(started) in _NUMBERS and type(finished) in _NUMBERS
        yield name, state, attempts, (finished - started) if timed else None


def run_figures(runs: Iterable[FinishedRun], query: AnalyticsQuery) -> list[RunFigures]:
    """Each workflow's figures over the runs of ``runs`` that ``query`` keeps."""
    states: dict[str, list[int]] = {}
    durations: dict[str, list[float]] = {}
    executions: dict[str, list[int]] = {}
    for run in runs:
        if not query.keeps(run.workflow_name, run.finished_at) or run.state not in FINAL_STATE_NAMES:
            continue
        name = run.workflow_name
        states.setdefault(name, [0] * len(FINAL_STATE_NAMES))[FINAL_STATE_NAMES.index(run.state)] += 1
        durations.setdefault(name, []).append(run.finished_at - run.created_at)
        counts = executions.setdefault(name, [0, 0])
        for _step, _state, attempts, _duration in _executions(run):
            counts[0] += 1
            counts[1] += attempts > 1
    figures = []
    for name, by_state in states.items():
        ordered = sorted(durations[name])
        figures.append(
            RunFigures(
                workflow_name=name,
                by_state=tuple(by_state),
                duration_p50=nearest_rank(ordered, 0.50),
                duration_p95=nearest_rank(ordered, 0.95),
                duration_p99=nearest_rank(ordered, 0.99),
                step_executions=executions[name][0],
                retried_steps=executions[name][1],
            )
        )
    return figures


def step_figures(runs: Iterable[FinishedRun], query: AnalyticsQuery) -> list[StepFigures]:
    """Each (workflow, step)'s figures over the runs of ``runs`` that ``query`` keeps."""
    counts: dict[tuple[str, str], list[int]] = {}
    durations: dict[tuple[str, str], list[float]] = {}
    for run in runs:
        if not query.keeps(run.workflow_name, run.finished_at) or run.state not in FINAL_STATE_NAMES:
            continue
        for step, state, attempts, duration in _executions(run):
            key = (run.workflow_name, step)
            found = counts.setdefault(key, [0, 0, 0, 0])
            found[0] += 1
            found[1] += attempts
            found[2] += attempts > 1
            found[3] += state == "failed"
            timed = durations.setdefault(key, [])
            if duration is not None:
                timed.append(duration)
    figures = []
    for (workflow_name, step_name), (executions, attempts, retried, failed) in counts.items():
        ordered = sorted(durations[(workflow_name, step_name)])
        figures.append(
            StepFigures(
                workflow_name=workflow_name,
                step_name=step_name,
                executions=executions,
                attempts=attempts,
                retried=retried,
                failed=failed,
                timed=len(ordered),
                total_seconds=sum(ordered),
                duration_p50=nearest_rank(ordered, 0.50) if ordered else 0.0,
                duration_p95=nearest_rank(ordered, 0.95) if ordered else 0.0,
            )
        )
    return figures
