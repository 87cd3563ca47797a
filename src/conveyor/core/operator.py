"""The pure half of what a person does to a run by hand: retry it from a named step, skip a failed step
with a given result, mark it completed.

Each returns the run's new record and the checkpoint that writes it, as :func:`~conveyor.core.settle.settle`
does, and changes nothing it is given. Who may do what, and the log of who did, is the runtime's
(:mod:`conveyor.runtime.operator`).
"""

from __future__ import annotations

import dataclasses

from conveyor.core.records import Checkpoint, RunRecord, completion_counts
from conveyor.core.settle import RETRYABLE_RUN_STATES, Settled, _output, reopen_for_retry
from conveyor.core.states import RunState, StepState
from conveyor.definition.workflow import Workflow
from conveyor.errors import InvalidTransitionError

RETRYABLE_FROM_A_STEP = RETRYABLE_RUN_STATES | {RunState.COMPLETED}
"""The runs that may be retried from a named step: those a plain retry takes, and completed ones."""

SKIPPABLE_RUN_STATES = RETRYABLE_RUN_STATES
"""The runs one of whose steps may be skipped by hand: those that ended without completing (not cancelled)."""

SKIPPABLE_STEP_STATES = frozenset({StepState.FAILED, StepState.RETRYING})
"""The steps that may be skipped: the one that failed for good, or one a dead-lettered run left retrying."""

COMPLETABLE_BY_HAND = frozenset(RunState) - {RunState.COMPLETED}
"""The runs a person may mark completed: any that has not completed. Outside the table of run transitions,
which says what the engine does: this is a person's word, logged with who and why."""


def steps_from(workflow: Workflow, step_name: str) -> tuple[str, ...]:
    """``step_name`` and every step that depends on it, directly or not, in the workflow's order."""
    reached = {step_name}
    for spec in workflow.steps:  # dependencies come first, so one pass reaches every dependent
        if spec.name not in reached and any(dependency in reached for dependency in spec.depends_on):
            reached.add(spec.name)
    return tuple(name for name in workflow.step_names if name in reached)


def reopen_from_step(workflow: Workflow, run: RunRecord, step_name: str, now: float) -> Settled:
    """Reopen ``run`` so that ``step_name`` and every step depending on it run again (completed or not), as
    well as what a plain retry runs again (failed and undone steps); other completed steps are kept.

    Nothing is undone first: a completed step that runs again does its work again (with a fresh idempotency
    key, as every step that runs after a retry). A completed run may be reopened so. (A completed step
    reset to pending, like a failed one skipped to completed, is a person's move: the engine's table of
    step transitions, which guards what outcomes may do, does not list it.)
    """
    return reopen_for_retry(workflow, run, now, frozenset(steps_from(workflow, step_name)))


def skip_step(workflow: Workflow, run: RunRecord, step_name: str, result: str, now: float) -> Settled:
    """Reopen a run that ended without completing, with its step ``step_name`` completed with ``result``
    (JSON text), as if it had returned it; the steps a retry runs again run again, and the run goes on.

    The skipped step counts as completed: later steps get ``result``, and if the run fails again, its undo
    (if it has one) is run with it. A run whose last missing step was skipped is completed at once.
    """
    old = run.steps[step_name]
    if old.state not in SKIPPABLE_STEP_STATES:  # a person's word, outside the engine's table of step moves
        raise InvalidTransitionError(
            f"step {step_name!r} is {old.state.value}; only a failed step can be skipped",
            workflow_id=run.workflow_id,
        )
    reopened, checkpoint = reopen_for_retry(workflow, run, now)
    skipped = old._replace(
        state=StepState.COMPLETED,
        result=result,
        error=None,
        next_attempt_at=None,
        finished_at=now,
        completion_order=reopened.last_completion_order + 1,
    )
    steps = {**reopened.steps, step_name: skipped}
    completed, last_order = completion_counts(steps.values())
    done = completed == len(workflow.steps)
    new = dataclasses.replace(
        reopened,
        steps=steps,
        state=RunState.COMPLETED if done else RunState.RUNNING,
        output=_output(workflow, steps) if done else None,
        completed_count=completed,
        last_completion_order=last_order,
    )
    changed = (*(record for record in checkpoint.steps if record.name != step_name), skipped)
    return new, checkpoint._replace(steps=changed, state=new.state, output=new.output)


def complete_by_hand(run: RunRecord, output: str, now: float) -> Settled:
    """``run`` marked completed with ``output`` (JSON text), whatever its steps say: no step changes.

    A running or waiting run stops (its waits are left as recorded; its signals unconsumed); a compensating
    one leaves its remaining undos undone.
    """
    new = dataclasses.replace(
        run, state=RunState.COMPLETED, output=output, error=None, wake_at=None, updated_at=now
    )
    checkpoint = Checkpoint(
        workflow_id=run.workflow_id,
        epoch=run.epoch,
        steps=(),
        state=RunState.COMPLETED,
        output=output,
        error=None,
        wake_at=None,
        at=now,
        generation=run.generation,
        previous_state=run.state,
    )
    return new, checkpoint
