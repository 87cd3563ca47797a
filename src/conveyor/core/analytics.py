"""What the analytics ask a backend, and the raw figures a backend answers with: plain values, no I/O.

A backend computes these in its database (see :meth:`~conveyor.backends.base.Backend.run_figures` and
:meth:`~conveyor.backends.base.Backend.step_figures`) over the runs that *finished* inside a window: the
runs whose ``finished_at`` (the time of the write that gave them their final state) is at or after
``since`` and before ``until``. :mod:`conveyor.observe.analytics` turns the figures into the reports users
read (rates, the health score, the bottleneck ranking).

Percentiles are by nearest rank, the same in every backend: the ``p`` percentile of ``n`` values is the
value at rank ``ceil(p * n)`` of them sorted (PostgreSQL's ``percentile_disc``), so it is always one of the
values measured, never an interpolation between two.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from conveyor.core.states import FINAL_RUN_STATES, RunState

FINAL_STATE_NAMES: tuple[str, ...] = tuple(sorted(state.value for state in FINAL_RUN_STATES))
"""The final run states' names, in a fixed order (the order :attr:`RunFigures.by_state` counts them in)."""

NEEDS_ATTENTION = frozenset({RunState.FAILED, RunState.COMPENSATION_FAILED, RunState.DEAD_LETTERED})
"""The final states that leave work for a person: a failure nothing undid, an undo that kept failing, a run
set aside after its workers kept dying."""


@dataclass(frozen=True, slots=True)
class AnalyticsQuery:
    """Which finished runs the figures are about: those finished in ``[since, until)`` (epoch seconds),
    of the workflows named in ``workflow_names`` (recorded names), or of every workflow when it is None."""

    since: float
    until: float
    workflow_names: tuple[str, ...] | None = None

    def keeps(self, workflow_name: str, finished_at: float | None) -> bool:
        """Whether a run of ``workflow_name`` that finished at ``finished_at`` is one the query is about
        (for backends that filter in Python)."""
        if finished_at is None or not self.since <= finished_at < self.until:
            return False
        return self.workflow_names is None or workflow_name in self.workflow_names


@dataclass(frozen=True, slots=True)
class RunFigures:
    """One workflow's finished runs in a window, as a backend counts them.

    ``by_state`` counts the runs of each final state, in the order of :data:`FINAL_STATE_NAMES`. Durations
    run from when a run was recorded (``created_at``) to when it finished. ``step_executions`` counts the
    steps of those runs that ran at least once; ``retried_steps`` those of them that took more than one
    attempt.
    """

    workflow_name: str
    by_state: tuple[int, ...]
    duration_p50: float
    duration_p95: float
    duration_p99: float
    step_executions: int
    retried_steps: int

    @property
    def finished(self) -> int:
        """How many runs finished in the window."""
        return sum(self.by_state)

    def count(self, state: RunState) -> int:
        """How many of them ended in ``state`` (0 for a state that is not final)."""
        name = state.value
        return self.by_state[FINAL_STATE_NAMES.index(name)] if name in FINAL_STATE_NAMES else 0


@dataclass(frozen=True, slots=True)
class StepFigures:
    """One step of one workflow, over the finished runs of a window in which it ran at least once.

    ``executions`` counts those runs (the step ran in each); ``attempts`` adds up their attempts;
    ``retried`` counts the executions that took more than one attempt, ``failed`` those that failed for good
    (the step's state is ``failed``). Durations are of each execution's last attempt (``finished_at -
    started_at`` as recorded; a wait step's is how long it waited): ``timed`` of the executions have one,
    ``total_seconds`` adds them up, and the percentiles are over them (0 when none is timed).
    """

    workflow_name: str
    step_name: str
    executions: int
    attempts: int
    retried: int
    failed: int
    timed: int
    total_seconds: float
    duration_p50: float
    duration_p95: float


def nearest_rank(ordered: Sequence[float], fraction: float) -> float:
    """The ``fraction`` percentile of ``ordered`` (sorted, not empty) by nearest rank: the value at rank
    ``ceil(fraction * n)``, counting from 1 (PostgreSQL's ``percentile_disc``)."""
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]
