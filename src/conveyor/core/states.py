"""Run and step states, and the table of the changes allowed between them."""

from __future__ import annotations

from enum import StrEnum

from conveyor.errors import InvalidTransitionError


class RunState(StrEnum):
    """Where a run is in its life. The last five are final."""

    PENDING = "pending"
    """Recorded, waiting for a worker to start it."""
    RUNNING = "running"
    COMPENSATING = "compensating"
    """A step failed for good; the undos of completed steps are running, newest first."""
    COMPLETED = "completed"
    FAILED = "failed"
    """A step failed for good and no completed step had anything to undo."""
    COMPENSATED = "compensated"
    """A step failed for good and every completed step was undone."""
    COMPENSATION_FAILED = "compensation_failed"
    """An undo kept failing: a person must look at this run."""
    CANCELLED = "cancelled"
    """Cancelled by request (or by its deadline): its completed steps were undone, newest first."""
    DEAD_LETTERED = "dead_lettered"
    """Its worker died while running it too many times in a row; a person must look (then retry it)."""


class StepState(StrEnum):
    """Where a step is in its life within one run."""

    PENDING = "pending"
    RETRYING = "retrying"
    """An attempt failed; the next one is due at ``next_attempt_at``."""
    WAITING = "waiting"
    """A durable sleep (due at ``next_attempt_at``) or a wait for a signal (since ``started_at``) began."""
    COMPLETED = "completed"
    FAILED = "failed"
    """Failed for good: out of retries, or a non-retryable error."""
    COMPENSATING = "compensating"
    """The undo failed at least once; its next attempt is due at ``next_attempt_at``."""
    COMPENSATED = "compensated"
    COMPENSATION_FAILED = "compensation_failed"
    SKIPPED = "skipped"
    """On a branch its route did not choose: never runs, has no undo, and counts as done."""


FINAL_RUN_STATES = frozenset(
    {
        RunState.COMPLETED,
        RunState.FAILED,
        RunState.COMPENSATED,
        RunState.COMPENSATION_FAILED,
        RunState.CANCELLED,
        RunState.DEAD_LETTERED,
    }
)

RUN_TRANSITIONS: dict[RunState, frozenset[RunState]] = {
    RunState.PENDING: frozenset({RunState.RUNNING, RunState.CANCELLED, RunState.DEAD_LETTERED}),
    RunState.RUNNING: frozenset(
        {
            RunState.COMPLETED,
            RunState.FAILED,
            RunState.COMPENSATING,
            RunState.CANCELLED,
            RunState.DEAD_LETTERED,
        }
    ),
    RunState.COMPENSATING: frozenset(
        {RunState.COMPENSATED, RunState.COMPENSATION_FAILED, RunState.CANCELLED, RunState.DEAD_LETTERED}
    ),
    # A completed run may be undone by request (``compensate_workflow``): its undos run, it ends cancelled;
    # or retried by hand from a named step: that step and what depends on it run again.
    RunState.COMPLETED: frozenset({RunState.COMPENSATING, RunState.RUNNING}),
    # A run that failed may be retried by hand: it runs again from the steps that did not complete.
    RunState.FAILED: frozenset({RunState.RUNNING}),
    RunState.COMPENSATED: frozenset({RunState.RUNNING}),
    RunState.COMPENSATION_FAILED: frozenset({RunState.RUNNING}),
    RunState.CANCELLED: frozenset(),
    RunState.DEAD_LETTERED: frozenset({RunState.RUNNING}),
}

STEP_TRANSITIONS: dict[StepState, frozenset[StepState]] = {
    # pending -> pending: a loop's iteration (or a map's element) is recorded and the step goes on
    StepState.PENDING: frozenset(
        {
            StepState.PENDING,
            StepState.COMPLETED,
            StepState.RETRYING,
            StepState.FAILED,
            StepState.WAITING,
            StepState.SKIPPED,
        }
    ),
    StepState.RETRYING: frozenset(
        {StepState.PENDING, StepState.COMPLETED, StepState.RETRYING, StepState.FAILED, StepState.WAITING}
    ),
    StepState.WAITING: frozenset({StepState.COMPLETED, StepState.RETRYING, StepState.FAILED}),
    StepState.COMPLETED: frozenset(
        {StepState.COMPENSATING, StepState.COMPENSATED, StepState.COMPENSATION_FAILED}
    ),
    StepState.FAILED: frozenset({StepState.PENDING}),
    StepState.COMPENSATING: frozenset(
        {StepState.COMPENSATING, StepState.COMPENSATED, StepState.COMPENSATION_FAILED}
    ),
    StepState.COMPENSATED: frozenset({StepState.PENDING}),
    StepState.COMPENSATION_FAILED: frozenset({StepState.PENDING}),
    # A retry by hand that runs a route again opens its skipped branches again.
    StepState.SKIPPED: frozenset({StepState.PENDING}),
}


def check_run_transition(current: RunState, new: RunState, *, workflow_id: str = "") -> None:
    """Raise :class:`InvalidTransitionError` unless a run may go from ``current`` to ``new``."""
    if new not in RUN_TRANSITIONS[current]:
        raise InvalidTransitionError(
            f"run {workflow_id!r} cannot go from {current.value!r} to {new.value!r}",
            workflow_id=workflow_id,
        )


def check_step_transition(current: StepState, new: StepState, *, step_name: str = "") -> None:
    """Raise :class:`InvalidTransitionError` unless a step may go from ``current`` to ``new``."""
    if new not in STEP_TRANSITIONS[current]:
        raise InvalidTransitionError(
            f"step {step_name!r} cannot go from {current.value!r} to {new.value!r}",
            step_name=step_name,
        )
