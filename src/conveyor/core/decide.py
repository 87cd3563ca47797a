"""The pure heart of the engine: what happens next in a run, and what an outcome changes.

:func:`decide` looks at a workflow, a run's record and the time, and says what to do next. The ``settle_*``
functions apply one outcome (a step or an undo succeeded or failed) to the run's record and return the
:class:`~conveyor.core.records.Checkpoint` to write. None of this does I/O, so all of it is tested
exhaustively with plain values.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import orjson

from conveyor.core.records import Checkpoint, Failure, RunRecord, StepRecord
from conveyor.core.states import (
    FINAL_RUN_STATES,
    RunState,
    StepState,
    check_run_transition,
    check_step_transition,
)
from conveyor.definition.workflow import StepSpec, Workflow

_COMPLETED = StepState.COMPLETED
_FAILED = StepState.FAILED


class Action(Enum):
    """The kinds of thing :func:`decide` can ask for."""

    RUN_STEPS = "run_steps"
    RUN_COMPENSATION = "run_compensation"
    WAIT_UNTIL = "wait_until"
    WAIT_FOR_IN_FLIGHT = "wait_for_in_flight"
    FINISHED = "finished"


@dataclass(slots=True)
class Decision:
    """What to do next: run ``steps`` (or the undo of ``steps[0]``), wait until ``at``, or nothing."""

    action: Action
    steps: tuple[StepSpec, ...] = ()
    at: float | None = None


FINISHED = Decision(Action.FINISHED)
WAIT_FOR_IN_FLIGHT = Decision(Action.WAIT_FOR_IN_FLIGHT)


def decide(workflow: Workflow, run: RunRecord, now: float) -> Decision:
    """Say what happens next in ``run`` at time ``now``."""
    state = run.state
    if state in FINAL_RUN_STATES:
        return FINISHED
    if state is RunState.COMPENSATING:
        return _decide_compensation(workflow, run, now)
    steps = run.steps
    in_flight = run.in_flight
    if workflow.is_chain and not in_flight and run.error is None:
        # A chain usually completes in order, so the next step is the one after the completed ones;
        # after a retry by hand that undid earlier steps it may not be, and the general search follows.
        index = run.completed_count
        spec = workflow.steps[index]
        record = steps[spec.name]
        if record.state is not _COMPLETED and (index == 0 or steps[spec.depends_on[0]].state is _COMPLETED):
            due = record.next_attempt_at
            if due is None or due <= now:
                return Decision(Action.RUN_STEPS, (spec,))
            return Decision(Action.WAIT_UNTIL, at=due)
    ready: list[StepSpec] = []
    earliest: float | None = None
    for spec in workflow.steps:
        record = steps[spec.name]
        if record.state is _COMPLETED or spec.name in in_flight:
            continue
        if record.state is _FAILED:
            continue
        for dependency in spec.depends_on:
            if steps[dependency].state is not _COMPLETED:
                break
        else:
            due = record.next_attempt_at
            if due is None or due <= now:
                ready.append(spec)
            elif earliest is None or due < earliest:
                earliest = due
    if run.error is not None:  # a step failed for good: start nothing new
        return WAIT_FOR_IN_FLIGHT if in_flight else FINISHED
    if ready:
        return Decision(Action.RUN_STEPS, tuple(ready))
    if earliest is not None:  # a retry is due later (the driver keeps watching in-flight steps)
        return Decision(Action.WAIT_UNTIL, at=earliest)
    if in_flight:
        return WAIT_FOR_IN_FLIGHT
    return FINISHED


def compensation_order(workflow: Workflow, run: RunRecord) -> list[StepRecord]:
    """The steps whose undo still has to run, newest completion first."""
    by_name = workflow.by_name
    pending = [
        record
        for record in run.steps.values()
        if record.state is StepState.COMPENSATING
        or (record.state is _COMPLETED and by_name[record.name].has_compensation)
    ]
    pending.sort(key=lambda record: record.completion_order or 0, reverse=True)
    return pending


def _decide_compensation(workflow: Workflow, run: RunRecord, now: float) -> Decision:
    pending = compensation_order(workflow, run)
    if not pending:
        return FINISHED
    newest = pending[0]
    if newest.name in run.in_flight:
        return WAIT_FOR_IN_FLIGHT
    due = newest.next_attempt_at
    if due is not None and due > now:
        return Decision(Action.WAIT_UNTIL, at=due)
    return Decision(Action.RUN_COMPENSATION, (workflow.by_name[newest.name],))


def _set_run_state(run: RunRecord, new: RunState) -> None:
    check_run_transition(run.state, new, workflow_id=run.workflow_id)
    run.state = new


def _output(workflow: Workflow, run: RunRecord) -> str:
    if workflow.output_step is not None:
        result = run.steps[workflow.output_step].result
        assert result is not None
        return result
    return (
        "{"
        + ",".join(
            orjson.dumps(spec.name).decode() + ":" + (run.steps[spec.name].result or "null")
            for spec in workflow.steps
        )
        + "}"
    )


def _earliest_due(run: RunRecord) -> float | None:
    """When the run's next timer is due: a retry while running, an undo's retry while compensating."""
    if run.state is RunState.RUNNING:
        waiting = StepState.RETRYING
    elif run.state is RunState.COMPENSATING:
        waiting = StepState.COMPENSATING
    else:
        return None
    dues = [r.next_attempt_at for r in run.steps.values() if r.state is waiting and r.next_attempt_at]
    return min(dues) if dues else None


def advance_run(workflow: Workflow, run: RunRecord) -> None:
    """Move the run to the state its steps imply: completed, compensating, failed or compensated."""
    if run.state is RunState.RUNNING:
        if run.completed_count == len(workflow.steps):
            _set_run_state(run, RunState.COMPLETED)
            run.output = _output(workflow, run)
            run.wake_at = None
            return
        if run.error is None or run.in_flight:
            return
        if any(
            record.state is _COMPLETED and workflow.by_name[record.name].has_compensation
            for record in run.steps.values()
        ):
            _set_run_state(run, RunState.COMPENSATING)
            run.wake_at = _earliest_due(run)
        else:
            _set_run_state(run, RunState.FAILED)
            run.wake_at = None
            return
    if run.state is RunState.COMPENSATING and not compensation_order(workflow, run):
        failed = any(r.state is StepState.COMPENSATION_FAILED for r in run.steps.values())
        _set_run_state(run, RunState.COMPENSATION_FAILED if failed else RunState.COMPENSATED)
        run.wake_at = None


def _checkpoint(run: RunRecord, records: tuple[StepRecord, ...], now: float) -> Checkpoint:
    run.updated_at = now
    return Checkpoint(
        workflow_id=run.workflow_id,
        epoch=run.epoch,
        steps=records,
        state=run.state,
        output=run.output,
        error=run.error,
        wake_at=run.wake_at,
        at=now,
        generation=run.generation,
    )


def settle_success(
    workflow: Workflow, run: RunRecord, spec: StepSpec, result: str, started: float, finished: float
) -> Checkpoint:
    """Record that ``spec`` completed with ``result`` (JSON text); returns the checkpoint to write."""
    record = run.steps[spec.name]
    if record.state is not StepState.PENDING and record.state is not StepState.RETRYING:
        check_step_transition(record.state, _COMPLETED, step_name=spec.name)
    run.in_flight.discard(spec.name)
    run.completed_count += 1
    run.last_completion_order += 1
    record.state = _COMPLETED
    record.attempts += 1
    record.result = result
    record.error = None
    record.started_at = started
    record.finished_at = finished
    record.completion_order = run.last_completion_order
    if record.next_attempt_at is not None:
        record.next_attempt_at = None
        run.wake_at = _earliest_due(run)
    advance_run(workflow, run)
    return _checkpoint(run, (record,), finished)


def settle_failure(
    workflow: Workflow,
    run: RunRecord,
    spec: StepSpec,
    error: BaseException,
    *,
    retryable: bool,
    started: float,
    finished: float,
    random_unit: float = 0.5,
) -> Checkpoint:
    """Record a failed attempt of ``spec``: schedule the next one, or fail the step for good."""
    record = run.steps[spec.name]
    run.in_flight.discard(spec.name)
    record.attempts += 1
    record.started_at = started
    record.finished_at = finished
    retry = retryable and spec.retries.allows_retry(record.attempts, error)
    record.error = Failure.from_exception(spec.name, error, record.attempts, retryable=retry)
    if retry:
        check_step_transition(record.state, StepState.RETRYING, step_name=spec.name)
        record.state = StepState.RETRYING
        record.next_attempt_at = finished + spec.retries.delay_after(record.attempts, random_unit)
        run.wake_at = _earliest_due(run)
    else:
        check_step_transition(record.state, _FAILED, step_name=spec.name)
        record.state = _FAILED
        record.next_attempt_at = None
        if run.error is None:
            run.error = record.error
        run.wake_at = _earliest_due(run)
    advance_run(workflow, run)
    return _checkpoint(run, (record,), finished)


def settle_compensation_success(
    workflow: Workflow, run: RunRecord, spec: StepSpec, finished: float
) -> Checkpoint:
    """Record that the undo of ``spec`` succeeded."""
    record = run.steps[spec.name]
    run.in_flight.discard(spec.name)
    check_step_transition(record.state, StepState.COMPENSATED, step_name=spec.name)
    if record.state is _COMPLETED:
        run.completed_count -= 1
    record.state = StepState.COMPENSATED
    record.compensation_attempts += 1
    if record.next_attempt_at is not None:
        record.next_attempt_at = None
        run.wake_at = _earliest_due(run)
    advance_run(workflow, run)
    return _checkpoint(run, (record,), finished)


def settle_compensation_failure(
    workflow: Workflow,
    run: RunRecord,
    spec: StepSpec,
    error: BaseException,
    *,
    retryable: bool,
    finished: float,
    random_unit: float = 0.5,
) -> Checkpoint:
    """Record a failed attempt at undoing ``spec``: retry it later, or give up on it."""
    record = run.steps[spec.name]
    run.in_flight.discard(spec.name)
    record.compensation_attempts += 1
    policy = spec.compensation_retries
    retry = retryable and policy.allows_retry(record.compensation_attempts, error)
    record.compensation_error = Failure.from_exception(
        spec.name, error, record.compensation_attempts, retryable=retry
    )
    new_state = StepState.COMPENSATING if retry else StepState.COMPENSATION_FAILED
    check_step_transition(record.state, new_state, step_name=spec.name)
    if record.state is _COMPLETED:
        run.completed_count -= 1
    record.state = new_state
    if retry:
        record.next_attempt_at = finished + policy.delay_after(record.compensation_attempts, random_unit)
    else:
        record.next_attempt_at = None
    run.wake_at = _earliest_due(run)
    advance_run(workflow, run)
    return _checkpoint(run, (record,), finished)


def recover(workflow: Workflow, run: RunRecord, now: float) -> Checkpoint | None:
    """After a run is taken over, settle a state change its previous driver did not live to write."""
    before = run.state
    run.in_flight.clear()
    advance_run(workflow, run)
    if run.state is before:
        return None
    return _checkpoint(run, (), now)


def merge_checkpoints(checkpoints: list[Checkpoint]) -> Checkpoint:
    """Fold the checkpoints of outcomes that settled together into one write (the last run state wins)."""
    last = checkpoints[-1]
    if len(checkpoints) == 1:
        return last
    steps: dict[str, StepRecord] = {}
    for checkpoint in checkpoints:
        for record in checkpoint.steps:
            steps[record.name] = record
    return Checkpoint(
        workflow_id=last.workflow_id,
        epoch=last.epoch,
        steps=tuple(steps.values()),
        state=last.state,
        output=last.output,
        error=last.error,
        wake_at=last.wake_at,
        at=last.at,
        generation=last.generation,
    )


RETRYABLE_RUN_STATES = frozenset(
    {RunState.FAILED, RunState.COMPENSATED, RunState.COMPENSATION_FAILED, RunState.DEAD_LETTERED}
)
_RERUN_STEP_STATES = frozenset(
    {StepState.FAILED, StepState.COMPENSATING, StepState.COMPENSATED, StepState.COMPENSATION_FAILED}
)


def reopen_for_retry(workflow: Workflow, run: RunRecord, now: float) -> Checkpoint:
    """Reopen a failed run so it runs again: completed steps are kept; failed and undone steps start over.

    The run's ``generation`` goes up by one, so steps that run again get fresh idempotency keys (a payment
    gateway would otherwise answer a retried charge with the stored decline).
    """
    check_run_transition(run.state, RunState.RUNNING, workflow_id=run.workflow_id)
    reset = []
    for record in run.steps.values():
        if record.state in _RERUN_STEP_STATES or record.state is StepState.RETRYING:
            if record.state is _COMPLETED:
                run.completed_count -= 1
            record.state = StepState.PENDING
            record.attempts = 0
            record.result = None
            record.error = None
            record.next_attempt_at = None
            record.completion_order = None
            record.compensation_attempts = 0
            record.compensation_error = None
            reset.append(record)
    run.state = RunState.RUNNING
    run.error = None
    run.output = None
    run.wake_at = None
    run.generation += 1
    return _checkpoint(run, tuple(reset), now)
