"""What starting a wait changes: a durable sleep or a wait for a signal begins (pure, like settle).

A wait step's record goes to ``waiting`` with ``started_at`` (when the wait began: a signal's timeout runs
from it) and, for a sleep, ``next_attempt_at`` (when it ends, fixed here once and never computed again);
the run's ``wake_at`` follows. Ending a wait is an ordinary outcome for :func:`conveyor.core.settle.settle`
(the sleep or the signal: :class:`~conveyor.core.settle.StepSucceeded`; a timeout: ``StepFailed``).
"""

from __future__ import annotations

from conveyor.core.records import RunRecord, StepRecord
from conveyor.core.settle import Settled, _settled
from conveyor.core.states import StepState, check_step_transition
from conveyor.definition.workflow import StepSpec, Workflow

WAIT_FOREVER = 253402300799.0
"""The wake time of a run that waits for a signal with no timeout (9999-12-31): never claimed by time."""


def begin_wait(
    workflow: Workflow, run: RunRecord, spec: StepSpec, now: float, until: float | None
) -> Settled:
    """``spec``'s wait begins at ``now``; a sleep gives the time it ends as ``until``, a signal wait None."""
    old = run.steps[spec.name]
    check_step_transition(old.state, StepState.WAITING, step_name=spec.name)
    record = StepRecord(
        spec.name,
        StepState.WAITING,
        old.attempts,
        None,
        old.error,
        until,
        now,
        None,
        None,
        old.compensation_attempts,
        old.compensation_error,
        old.progress,
    )
    return _settled(workflow, run, old, record, run.error, frozenset(), now)
