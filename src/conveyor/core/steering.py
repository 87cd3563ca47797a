"""The pure half of steering a run from outside: what a cancel changes.

A cancel is like a step failing for good: the run stops starting steps and its completed steps are undone,
newest first, by the same compensation that follows a failure; but the run's error says it was cancelled
and why, and when the undos are done the run ends ``cancelled`` (see ``settle``'s implied state).
"""

from __future__ import annotations

from conveyor.core.decide import undos_left
from conveyor.core.records import Checkpoint, Failure, RunRecord
from conveyor.core.states import RunState, check_run_transition
from conveyor.definition.workflow import Workflow

CANCELLED_ERROR_TYPE = "Cancelled"
"""The ``error_type`` of the failure a cancelled run records: how a cancel is told from a failure."""

DEADLINE_REASON = "the run passed its deadline"
"""The reason a run cancelled by its deadline records."""


def is_cancellation(failure: Failure | None) -> bool:
    """Whether ``failure`` is the one a cancel records (rather than a step's)."""
    return failure is not None and failure.error_type == CANCELLED_ERROR_TYPE


def cancellation(reason: str, step_name: str = "") -> Failure:
    """The failure a run cancelled for ``reason`` records (``step_name``: the step it was in, if any)."""
    return Failure(
        step_name=step_name,
        error_type=CANCELLED_ERROR_TYPE,
        message=reason or "cancelled",
        attempts=0,
        retryable=False,
    )


def cancel_run(
    workflow: Workflow, run: RunRecord, reason: str, now: float, step_name: str = ""
) -> tuple[RunRecord, Checkpoint] | None:
    """The record and checkpoint of ``run`` cancelled for ``reason``; None if a cancel changes nothing.

    A running (or pending) run with completed steps to undo goes ``compensating``, one with none ends
    ``cancelled`` at once. A run already compensating (a step failed for good) or ended is left as it is:
    its compensation goes on, and it ends as that compensation ends.
    """
    if run.state is not RunState.RUNNING and run.state is not RunState.PENDING:
        return None
    state = RunState.COMPENSATING if undos_left(workflow, run.steps) else RunState.CANCELLED
    check_run_transition(run.state, state, workflow_id=run.workflow_id)
    failure = cancellation(reason, step_name)
    new = RunRecord(
        run.workflow_id,
        run.workflow_name,
        run.workflow_version,
        state,
        run.input,
        run.correlation_id,
        run.step_names,
        run.steps.copy(),
        run.created_at,
        now,
        run.epoch,
        run.recoveries,
        run.generation,
        run.output,
        failure,
        None,
        run.leased_until,
        run.owner,
        run.definition_hash,
        run.completed_count,
        run.last_completion_order,
        None,
        run.cancel_reason if run.cancel_reason is not None else reason,
        False,
        run.deadline_at,
    )
    checkpoint = Checkpoint(
        workflow_id=run.workflow_id,
        epoch=run.epoch,
        steps=(),
        state=state,
        output=run.output,
        error=failure,
        wake_at=None,
        at=now,
        generation=run.generation,
        previous_state=run.state,
    )
    return new, checkpoint
