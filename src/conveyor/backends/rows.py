"""Rows as the SQL backends store them, and the records they stand for. Shared by every backend."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from conveyor.core.records import Failure, RunRecord, StepRecord, completion_counts
from conveyor.core.states import RunState, StepState
from conveyor.errors import LeaseLostError

StepRow = tuple[Any, ...]
"""(step_name, state, attempts, result, error, next_attempt_at, started_at, finished_at,
completion_order, compensation_attempts, compensation_error)"""

RunRow = tuple[Any, ...]
"""(workflow_id, workflow_name, workflow_version, state, input, output, error, correlation_id, step_names,
created_at, updated_at, wake_at, epoch, recoveries, generation)"""

STEP_COLUMNS = (
    "step_name, state, attempts, result, error, next_attempt_at, started_at, finished_at, "
    "completion_order, compensation_attempts, compensation_error"
)
RUN_COLUMNS = (
    "workflow_id, workflow_name, workflow_version, state, input, output, error, correlation_id, "
    "step_names, created_at, updated_at, wake_at, epoch, recoveries, generation"
)


STEP_STATE_TEXT: dict[StepState, str] = {state: state.value for state in StepState}
RUN_STATE_TEXT: dict[RunState, str] = {state: state.value for state in RunState}
"""Plain strings for states: rows hold only atoms, which the garbage collector need not scan."""


def failure_to_text(failure: Failure | None) -> str | None:
    """Store a failure as JSON text."""
    return None if failure is None else orjson.dumps(failure.to_dict()).decode()


def failure_from_text(text: str | bytes | None) -> Failure | None:
    """Read a failure stored by :func:`failure_to_text`."""
    return None if text is None else Failure.from_dict(orjson.loads(text))


def step_to_row(record: StepRecord) -> StepRow:
    """The row that stores ``record``."""
    error, compensation_error = record.error, record.compensation_error
    return (
        record.name,
        STEP_STATE_TEXT[record.state],
        record.attempts,
        record.result,
        None if error is None else failure_to_text(error),
        record.next_attempt_at,
        record.started_at,
        record.finished_at,
        record.completion_order,
        record.compensation_attempts,
        None if compensation_error is None else failure_to_text(compensation_error),
    )


def step_from_row(row: Sequence[Any]) -> StepRecord:
    """The record a row stores."""
    return StepRecord(
        name=row[0],
        state=StepState(row[1]),
        attempts=row[2],
        result=row[3],
        error=failure_from_text(row[4]),
        next_attempt_at=row[5],
        started_at=row[6],
        finished_at=row[7],
        completion_order=row[8],
        compensation_attempts=row[9],
        compensation_error=failure_from_text(row[10]),
    )


def run_from_rows(row: Sequence[Any], step_rows: Iterable[Sequence[Any]]) -> RunRecord:
    """Assemble a run's record from its row and its steps' rows; steps never recorded are pending."""
    step_names = tuple(orjson.loads(row[8]))
    recorded = {record.name: record for record in map(step_from_row, step_rows)}
    steps = {name: recorded.pop(name) if name in recorded else StepRecord(name) for name in step_names}
    steps.update(recorded)  # rows of steps the run's workflow no longer names: kept, to be reported
    completed_count, last_completion_order = completion_counts(steps.values())
    state = RunState(row[3])
    error = failure_from_text(row[6])
    if state is RunState.DEAD_LETTERED and error is None:  # set aside, its error not yet written
        completed = [name for name, record in steps.items() if record.state is StepState.COMPLETED]
        error = dead_letter_failure(step_names, completed, row[13])
    return RunRecord(
        workflow_id=row[0],
        workflow_name=row[1],
        workflow_version=row[2],
        state=state,
        input=row[4],
        output=row[5],
        error=error,
        correlation_id=row[7],
        step_names=step_names,
        steps=steps,
        created_at=row[9],
        updated_at=row[10],
        wake_at=row[11],
        epoch=row[12],
        recoveries=row[13],
        generation=row[14],
        completed_count=completed_count,
        last_completion_order=last_completion_order,
    )


READY_RUN_STATES = ("pending", "running", "compensating")
"""The states of runs a worker may claim (when no live lease holds them and their timer is due)."""


def dead_letter_failure(step_names: Sequence[str], completed: Iterable[str], recoveries: int) -> Failure:
    """The error of a run dead-lettered after its worker died ``recoveries`` times while running it."""
    done = set(completed)
    step = next((name for name in step_names if name not in done), step_names[-1] if step_names else "")
    return Failure(
        step_name=step,
        error_type="DeadLettered",
        message=(
            f"the worker running this run died {recoveries} times in a row (last seen in or after step "
            f"{step!r}); it was set aside so it cannot crash more workers. Fix the cause, then retry it."
        ),
        attempts=recoveries,
        retryable=False,
    )


def lease_lost(workflow_id: str) -> LeaseLostError:
    """The error for a checkpoint refused because another process took the run over."""
    return LeaseLostError(
        f"run {workflow_id!r} was taken over by another process; this write was refused",
        workflow_id=workflow_id,
    )
