"""Analytics over finished runs: each workflow's performance, each step's, the bottlenecks, a health score.

The backend computes the raw figures in its database (:mod:`conveyor.core.analytics`); this module turns
them into the reports :meth:`conveyor.Conveyor.performance` and :meth:`conveyor.Conveyor.bottlenecks`
return, each a frozen dataclass with ``to_dict()`` (JSON-ready, for the REST API). Everything is about the
runs that *finished* inside a window (by ``finished_at``, the time they reached their final state).

The health score (0 to 100) weighs three shares of what happened in the window::

    health = 100 * (0.60 * (1 - failure_rate) + 0.25 * success_rate + 0.15 * first_attempt_rate)

- ``failure_rate``: the runs that ended needing a person (``failed``, ``compensation_failed``,
  ``dead_lettered``). Weighed most (0.60): such a run is stuck money or a stuck order until someone acts.
- ``success_rate``: the runs that ``completed``. A run that was undone cleanly (``compensated``, or
  ``cancelled``: a declined card, a customer who changed their mind) is the saga doing its job, so it costs
  only this share (0.25), not the first.
- ``first_attempt_rate``: the step executions that needed no retry. Retries are the early warning
  (0.15): a dependency that slows down or flickers shows here while runs still complete.

A window with no finished run has no score (None).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from conveyor.core.analytics import FINAL_STATE_NAMES, NEEDS_ATTENTION, RunFigures, StepFigures

HEALTH_WEIGHTS = {"no_failure": 0.60, "success": 0.25, "first_attempt": 0.15}
"""What the health score weighs (see the module's docstring): the weights add up to 1."""
_ATTENTION = frozenset(state.value for state in NEEDS_ATTENTION)


def health_score(
    *, finished: int, completed: int, needs_attention: int, step_executions: int, retried_steps: int
) -> float | None:
    """The health score (0 to 100) of a window's counts; None when no run finished in it."""
    if finished <= 0:
        return None
    first_attempt = 1.0 if step_executions <= 0 else 1 - retried_steps / step_executions
    score = (
        HEALTH_WEIGHTS["no_failure"] * (1 - needs_attention / finished)
        + HEALTH_WEIGHTS["success"] * completed / finished
        + HEALTH_WEIGHTS["first_attempt"] * first_attempt
    )
    return 100 * score


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat()


def _rate(part: int, whole: int) -> float | None:
    return None if whole <= 0 else part / whole


@dataclass(frozen=True, slots=True)
class Window:
    """The time the figures are about: runs finished at or after ``since``, before ``until`` (epoch s)."""

    since: float
    until: float

    @property
    def seconds(self) -> float:
        """How long the window is."""
        return self.until - self.since

    def to_dict(self) -> dict[str, Any]:
        """The window as a JSON-ready dict (ISO 8601 times, UTC)."""
        return {"since": _iso(self.since), "until": _iso(self.until), "seconds": self.seconds}


@dataclass(frozen=True, slots=True)
class WorkflowPerformance:
    """One workflow's runs finished in the window: how many, how they ended, how long they took.

    Durations run from when a run was recorded to when it finished (queueing and waits included).
    """

    workflow: str
    """The name its runs record (``namespace.name`` outside the default namespace)."""
    finished: int
    by_state: Mapping[str, int]
    """How many ended in each final state."""
    success_rate: float
    """The share that completed."""
    failure_rate: float
    """The share that ended needing a person: failed, compensation_failed or dead_lettered."""
    throughput_per_minute: float
    """Finished runs per minute of the window."""
    duration_p50_seconds: float
    duration_p95_seconds: float
    duration_p99_seconds: float
    step_executions: int
    """Steps of these runs that ran at least once."""
    retried_steps: int
    """Of those, the ones that took more than one attempt."""
    health_score: float
    """0 to 100; see :mod:`conveyor.observe.analytics`."""

    @property
    def first_attempt_rate(self) -> float:
        """The share of step executions that needed no retry (1 when no step ran)."""
        return 1.0 if self.step_executions == 0 else 1 - self.retried_steps / self.step_executions

    def to_dict(self) -> dict[str, Any]:
        """The figures as a JSON-ready dict."""
        return {
            "workflow": self.workflow,
            "finished": self.finished,
            "by_state": dict(self.by_state),
            "success_rate": self.success_rate,
            "failure_rate": self.failure_rate,
            "throughput_per_minute": self.throughput_per_minute,
            "duration_seconds": {
                "p50": self.duration_p50_seconds,
                "p95": self.duration_p95_seconds,
                "p99": self.duration_p99_seconds,
            },
            "step_executions": self.step_executions,
            "retried_steps": self.retried_steps,
            "first_attempt_rate": self.first_attempt_rate,
            "health_score": self.health_score,
        }


@dataclass(frozen=True, slots=True)
class Performance:
    """Every workflow's performance over one window (``workflows``, by name), and the totals across them.

    The totals' rates and ``health_score`` are None when no run finished in the window.
    """

    window: Window
    workflows: tuple[WorkflowPerformance, ...]
    finished: int
    success_rate: float | None
    failure_rate: float | None
    throughput_per_minute: float
    health_score: float | None

    def workflow(self, name: str) -> WorkflowPerformance | None:
        """The performance of the workflow whose runs record ``name``, None if none finished."""
        return next((found for found in self.workflows if found.workflow == name), None)

    def to_dict(self) -> dict[str, Any]:
        """The report as a JSON-ready dict."""
        return {
            "window": self.window.to_dict(),
            "finished": self.finished,
            "success_rate": self.success_rate,
            "failure_rate": self.failure_rate,
            "throughput_per_minute": self.throughput_per_minute,
            "health_score": self.health_score,
            "workflows": [found.to_dict() for found in self.workflows],
        }


@dataclass(frozen=True, slots=True)
class StepPerformance:
    """One step of one workflow, over the runs finished in the window in which it ran.

    Durations are of each execution's last attempt (a wait step's: how long it waited); the percentiles
    and the mean are None when no execution recorded its times.
    """

    rank: int
    """1 for the worst bottleneck (see :class:`Bottlenecks`)."""
    workflow: str
    step: str
    executions: int
    attempts: int
    retried: int
    """Executions that took more than one attempt."""
    failed: int
    """Executions that failed for good."""
    retry_rate: float
    """``retried / executions``."""
    failure_rate: float
    """``failed / executions``."""
    duration_mean_seconds: float | None
    duration_p50_seconds: float | None
    duration_p95_seconds: float | None
    total_seconds: float
    """The time all its executions took together: what the ranking weighs."""
    share_of_time: float | None
    """Its part of the time all the workflow's steps took (None if they took none)."""
    waits: bool | None
    """Whether it is a wait step (a sleep, a signal, a child run); None if its workflow is not registered."""

    @property
    def retries(self) -> int:
        """Attempts beyond the first, over all its executions."""
        return self.attempts - self.executions

    def to_dict(self) -> dict[str, Any]:
        """The figures as a JSON-ready dict."""
        return {
            "rank": self.rank,
            "workflow": self.workflow,
            "step": self.step,
            "executions": self.executions,
            "attempts": self.attempts,
            "retries": self.retries,
            "retried": self.retried,
            "failed": self.failed,
            "retry_rate": self.retry_rate,
            "failure_rate": self.failure_rate,
            "duration_seconds": {
                "mean": self.duration_mean_seconds,
                "p50": self.duration_p50_seconds,
                "p95": self.duration_p95_seconds,
            },
            "total_seconds": self.total_seconds,
            "share_of_time": self.share_of_time,
            "waits": self.waits,
        }


@dataclass(frozen=True, slots=True)
class Bottlenecks:
    """The steps of the window's finished runs, worst bottleneck first.

    Ranked by the time each step's executions took together (its mean times how often it ran: where time
    is spent, so where shaving it pays most), then by p95; wait steps (sleeps, signals, child runs) come
    after the steps that do work, since their time is spent waiting by design.
    """

    window: Window
    steps: tuple[StepPerformance, ...]

    def of_workflow(self, name: str) -> tuple[StepPerformance, ...]:
        """The steps of the workflow whose runs record ``name``, in rank order."""
        return tuple(step for step in self.steps if step.workflow == name)

    def step(self, workflow: str, step: str) -> StepPerformance | None:
        """One step's figures, None if it did not run in the window."""
        return next((s for s in self.steps if s.workflow == workflow and s.step == step), None)

    def to_dict(self) -> dict[str, Any]:
        """The report as a JSON-ready dict."""
        return {"window": self.window.to_dict(), "steps": [step.to_dict() for step in self.steps]}


def performance_report(window: Window, figures: Iterable[RunFigures]) -> Performance:
    """The :class:`Performance` of ``figures`` (a backend's :class:`RunFigures`) over ``window``."""
    minutes = window.seconds / 60
    workflows = []
    totals = [0, 0, 0, 0, 0]  # finished, completed, needing attention, step executions, retried
    for found in sorted(figures, key=lambda found: found.workflow_name):
        by_state = dict(zip(FINAL_STATE_NAMES, found.by_state, strict=True))
        finished, completed = found.finished, by_state["completed"]
        attention = sum(count for state, count in by_state.items() if state in _ATTENTION)
        counts = (finished, completed, attention, found.step_executions, found.retried_steps)
        totals = [total + count for total, count in zip(totals, counts, strict=True)]
        score = _health(*counts)
        workflows.append(
            WorkflowPerformance(
                workflow=found.workflow_name,
                finished=finished,
                by_state=by_state,
                success_rate=completed / finished,
                failure_rate=attention / finished,
                throughput_per_minute=finished / minutes,
                duration_p50_seconds=found.duration_p50,
                duration_p95_seconds=found.duration_p95,
                duration_p99_seconds=found.duration_p99,
                step_executions=found.step_executions,
                retried_steps=found.retried_steps,
                health_score=score if score is not None else 0.0,
            )
        )
    finished, completed, attention = totals[:3]
    return Performance(
        window=window,
        workflows=tuple(workflows),
        finished=finished,
        success_rate=_rate(completed, finished),
        failure_rate=_rate(attention, finished),
        throughput_per_minute=finished / minutes,
        health_score=_health(*totals),
    )


def _health(
    finished: int, completed: int, needs_attention: int, step_executions: int, retried_steps: int
) -> float | None:
    return health_score(
        finished=finished,
        completed=completed,
        needs_attention=needs_attention,
        step_executions=step_executions,
        retried_steps=retried_steps,
    )


def bottleneck_report(
    window: Window, figures: Iterable[StepFigures], waits: Mapping[tuple[str, str], bool]
) -> Bottlenecks:
    """The :class:`Bottlenecks` of ``figures`` (a backend's :class:`StepFigures`) over ``window``;
    ``waits`` says, of the steps of registered workflows, which are wait steps."""
    found = list(figures)
    time_by_workflow: dict[str, float] = {}
    for step in found:
        spent = time_by_workflow.get(step.workflow_name, 0.0)
        time_by_workflow[step.workflow_name] = spent + step.total_seconds

    def order(step: StepFigures) -> tuple[Any, ...]:
        waiting = waits.get((step.workflow_name, step.step_name)) is True
        return (waiting, -step.total_seconds, -step.duration_p95, step.workflow_name, step.step_name)

    ranked: Sequence[StepFigures] = sorted(found, key=order)
    steps = []
    for rank, step in enumerate(ranked, 1):
        timed = step.timed > 0
        workflow_time = time_by_workflow[step.workflow_name]
        steps.append(
            StepPerformance(
                rank=rank,
                workflow=step.workflow_name,
                step=step.step_name,
                executions=step.executions,
                attempts=step.attempts,
                retried=step.retried,
                failed=step.failed,
                retry_rate=step.retried / step.executions,
                failure_rate=step.failed / step.executions,
                duration_mean_seconds=step.total_seconds / step.timed if timed else None,
                duration_p50_seconds=step.duration_p50 if timed else None,
                duration_p95_seconds=step.duration_p95 if timed else None,
                total_seconds=step.total_seconds,
                share_of_time=step.total_seconds / workflow_time if workflow_time > 0 else None,
                waits=waits.get((step.workflow_name, step.step_name)),
            )
        )
    return Bottlenecks(window=window, steps=tuple(steps))
