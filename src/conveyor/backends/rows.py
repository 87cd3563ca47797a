"""Rows as the SQL backends store them, and the records they stand for. Shared by every backend."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from conveyor.core.records import Failure, NewRun, RunRecord, StepRecord, completion_counts, pending_steps
from conveyor.core.states import RunState, StepState
from conveyor.errors import CorruptRunError, LeaseLostError

StepRow = tuple[Any, ...]
"""(step_name, state, attempts, result, error, next_attempt_at, started_at, finished_at,
completion_order, compensation_attempts, compensation_error, progress); a row stored before there was a
``progress`` (PostgreSQL keeps the columns in a JSON array) has one column fewer, read as no progress."""

RunRow = tuple[Any, ...]
"""(workflow_id, workflow_name, workflow_version, state, input, output, error, correlation_id, step_names,
created_at, updated_at, wake_at, epoch, recoveries, generation, definition_hash)"""

STEP_COLUMNS = (
    "step_name, state, attempts, result, error, next_attempt_at, started_at, finished_at, "
    "completion_order, compensation_attempts, compensation_error, progress"
)
RUN_COLUMNS = (
    "workflow_id, workflow_name, workflow_version, state, input, output, error, correlation_id, "
    "step_names, created_at, updated_at, wake_at, epoch, recoveries, generation, definition_hash"
)


STEP_STATE_TEXT: dict[StepState, str] = {state: state.value for state in StepState}
RUN_STATE_TEXT: dict[RunState, str] = {state: state.value for state in RunState}
"""Plain strings for states: rows hold only atoms, which the garbage collector need not scan."""


def failure_to_text(failure: Failure | None) -> str | None:
    """Store a failure as JSON text."""
    return None if failure is None else orjson.dumps(failure.to_dict()).decode()


def failure_from_text(text: str | bytes | None) -> Failure | None:
    """Read a failure stored by :func:`failure_to_text` (one that cannot be read raises ValueError)."""
    if text is None:
        return None
    data = orjson.loads(text)
    if type(data) is not dict or not _FAILURE_FIELDS.issubset(data):
        raise ValueError("not a stored failure")
    failure = Failure.from_dict(data)
    if not (
        type(failure.step_name) is type(failure.error_type) is type(failure.message) is str
        and type(failure.attempts) is int
        and type(failure.retryable) is bool
        and type(failure.traceback) is str
    ):
        raise ValueError("not a stored failure")
    return failure


_FAILURE_FIELDS = frozenset({"step_name", "error_type", "message", "attempts"})
_STEP_STATES: dict[object, StepState] = {state.value: state for state in StepState}
_RUN_STATES: dict[object, RunState] = {state.value: state for state in RunState}
_NUMBERS = (int, float)


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
        record.progress,
    )


class _Reader:
    """Reads the columns of one run's rows, raising :class:`CorruptRunError` at the first bad value."""

    __slots__ = ("step_name", "workflow_id")

    def __init__(self, workflow_id: str) -> None:
        self.workflow_id = workflow_id
        self.step_name: str | None = None

    def corrupt(self, column: str, value: object, why: str) -> CorruptRunError:
        """The error for ``column`` holding ``value``, which is ``why`` it cannot be read."""
        shown = repr(value)
        if len(shown) > _SHOWN_CHARS:
            shown = shown[:_SHOWN_CHARS] + "..."
        where = "" if self.step_name is None else f"step {self.step_name!r}: "
        return CorruptRunError(
            f"run {self.workflow_id!r} cannot be read: {where}column {column} holds {shown}, {why}; "
            "the run is failed so that it stops no worker (fix the row, then retry the run)",
            workflow_id=self.workflow_id,
            column=column,
            step_name=self.step_name,
            value=shown,
        )

    def text(self, column: str, value: object) -> str:
        """``value``, checked to be text."""
        if type(value) is not str:
            raise self.corrupt(column, value, "which is not text")
        return value

    def maybe_text(self, column: str, value: object) -> str | None:
        """``value``, checked to be text or NULL."""
        return None if value is None else self.text(column, value)

    def json(self, column: str, value: object) -> str:
        """``value``, checked to be JSON text."""
        if type(value) is not str:
            raise self.corrupt(column, value, "which is not JSON text")
        try:
            orjson.loads(value)
        except orjson.JSONDecodeError:
            raise self.corrupt(column, value, "which is not JSON") from None
        return value

    def maybe_json(self, column: str, value: object) -> str | None:
        """``value``, checked to be JSON text or NULL."""
        return None if value is None else self.json(column, value)

    def failure(self, column: str, value: object) -> Failure | None:
        """The failure ``value`` stores, or None for NULL."""
        if value is not None and type(value) is not str:
            raise self.corrupt(column, value, "which is not a stored failure")
        try:
            return failure_from_text(value)
        except ValueError:  # orjson.JSONDecodeError is one too
            raise self.corrupt(column, value, "which is not a stored failure") from None

    def count(self, column: str, value: object) -> int:
        """``value``, checked to be a whole number, zero or more."""
        if type(value) is not int or value < 0:
            raise self.corrupt(column, value, "which is not a count")
        return value

    def time(self, column: str, value: object) -> float:
        """``value``, checked to be a number of epoch seconds."""
        if type(value) not in _NUMBERS:
            raise self.corrupt(column, value, "which is not a time")
        return value  # type: ignore[return-value]

    def maybe_time(self, column: str, value: object) -> float | None:
        """``value``, checked to be a number of epoch seconds or NULL."""
        return None if value is None else self.time(column, value)


_SHOWN_CHARS = 80
"""How much of a bad value an error shows."""


def step_from_row(row: Sequence[Any], workflow_id: str = "") -> StepRecord:
    """The record a row stores; :class:`CorruptRunError` if a column of it cannot be read.

    The common row (every type as written, no errors stored) is checked in one expression; anything else
    goes through :func:`_read_step`, which names the column at fault.
    """
    width = len(row)
    if (width == _STEP_WIDTH and row[11] is None) or width == _OLD_STEP_WIDTH:
        name, state_text, attempts, result, error, next_at, started, finished, order, undos, undo_error = row[
            :_OLD_STEP_WIDTH
        ]
        state = _STEP_STATES.get(state_text)
        if (
            state is not None
            and type(name) is str
            and type(attempts) is int
            and type(undos) is int
            and attempts >= 0
            and undos >= 0
            and error is None
            and undo_error is None
            and (order is None or type(order) is int)
            and (next_at is None or type(next_at) in _NUMBERS)
            and (started is None or type(started) in _NUMBERS)
            and (finished is None or type(finished) in _NUMBERS)
            and (type(result) is str if state is StepState.COMPLETED else result is None)
        ):
            try:
                if result is not None:
                    orjson.loads(result)
            except orjson.JSONDecodeError:
                pass  # named below
            else:
                return StepRecord(
                    name, state, attempts, result, None, next_at, started, finished, order, undos
                )
    return _read_step(row, workflow_id)


def _read_step(row: Sequence[Any], workflow_id: str) -> StepRecord:
    """:func:`step_from_row` column by column: raises :class:`CorruptRunError` naming the first bad one."""
    read = _Reader(workflow_id)
    if len(row) == _OLD_STEP_WIDTH:  # stored before there was a progress column
        row = (*row, None)
    if len(row) != _STEP_WIDTH:
        raise read.corrupt("steps", row[0] if len(row) == 1 else tuple(row), "which is not a step's row")
    read.step_name = read.text("step_name", row[0])
    state = _STEP_STATES.get(row[1])
    if state is None:
        raise read.corrupt("state", row[1], "which is not a step state")
    result = read.maybe_json("result", row[3])
    if result is None and state is StepState.COMPLETED:
        raise read.corrupt("result", None, "but the step completed")
    completion_order = row[8]
    if completion_order is not None:
        read.count("completion_order", completion_order)
    return StepRecord(
        name=read.step_name,
        state=state,
        attempts=read.count("attempts", row[2]),
        result=result,
        error=read.failure("error", row[4]),
        next_attempt_at=read.maybe_time("next_attempt_at", row[5]),
        started_at=read.maybe_time("started_at", row[6]),
        finished_at=read.maybe_time("finished_at", row[7]),
        completion_order=completion_order,
        compensation_attempts=read.count("compensation_attempts", row[9]),
        compensation_error=read.failure("compensation_error", row[10]),
        progress=read.maybe_json("progress", row[11]),
    )


_STEP_WIDTH = 12
_OLD_STEP_WIDTH = 11


def new_record(
    run: NewRun, *, state: RunState, now: float, epoch: int, owner: str | None, leased_until: float | None
) -> RunRecord:
    """The record of ``run`` just stored with these columns: built from what was written (every step
    pending), never read back or decoded again."""
    return RunRecord(
        workflow_id=run.workflow_id,
        workflow_name=run.workflow_name,
        workflow_version=run.workflow_version,
        state=state,
        input=run.input,
        correlation_id=run.correlation_id,
        step_names=run.step_names,
        steps=pending_steps(run.step_names),
        created_at=now,
        updated_at=now,
        epoch=epoch,
        leased_until=leased_until,
        owner=owner,
        definition_hash=run.definition_hash,
        deadline_at=run.deadline_at,
        trace_context=run.trace_context,
    )


def run_from_rows(row: Sequence[Any], step_rows: Iterable[Sequence[Any]]) -> RunRecord:
    """Assemble a run's record from its row and its steps' rows; steps never recorded are pending.

    Never raises for what the rows hold: a run one of whose values cannot be read (an unknown state, JSON
    that does not parse, a count that is not one) comes back ``failed``, its error a ``CorruptRunError``
    naming the column and the value, and its ``corruption`` set (see :func:`decode_run`).
    """
    rows = step_rows if type(step_rows) is list or type(step_rows) is tuple else list(step_rows)
    try:
        return decode_run(row, rows)
    except CorruptRunError as error:
        return corrupt_run(row, rows, error)


def decode_run(row: Sequence[Any], step_rows: Iterable[Sequence[Any]]) -> RunRecord:
    """:func:`run_from_rows`, raising :class:`CorruptRunError` at the first value that cannot be read."""
    workflow_id = row[0]
    read = _Reader(workflow_id if type(workflow_id) is str else repr(workflow_id))
    read.text("workflow_id", workflow_id)
    try:
        names = orjson.loads(row[8])
    except (orjson.JSONDecodeError, TypeError):
        raise read.corrupt("step_names", row[8], "which is not a JSON list of step names") from None
    if type(names) is not list or not all(type(name) is str for name in names):
        raise read.corrupt("step_names", row[8], "which is not a JSON list of step names")
    step_names = tuple(names)
    recorded = {record.name: record for record in (step_from_row(r, read.workflow_id) for r in step_rows)}
    steps = {name: recorded.pop(name) if name in recorded else StepRecord(name) for name in step_names}
    steps.update(recorded)  # rows of steps the run's workflow no longer names: kept, to be reported
    completed_count, last_completion_order = completion_counts(steps.values())
    state = _RUN_STATES.get(row[3])
    if state is None:
        raise read.corrupt("state", row[3], "which is not a run state")
    error = read.failure("error", row[6])
    recoveries = read.count("recoveries", row[13])
    if state is RunState.DEAD_LETTERED and error is None:  # set aside, its error not yet written
        completed = [name for name, record in steps.items() if record.state is StepState.COMPLETED]
        error = dead_letter_failure(step_names, completed, recoveries)
    created_at = read.time("created_at", row[9])
    updated_at = read.time("updated_at", row[10])
    return RunRecord(
        workflow_id=workflow_id,
        workflow_name=read.text("workflow_name", row[1]),
        workflow_version=read.text("workflow_version", row[2]),
        state=state,
        input=read.json("input", row[4]),
        output=read.maybe_json("output", row[5]),
        error=error,
        correlation_id=read.text("correlation_id", row[7]),
        step_names=step_names,
        steps=steps,
        created_at=created_at,
        updated_at=updated_at,
        wake_at=read.maybe_time("wake_at", row[11]),
        epoch=read.count("epoch", row[12]),
        recoveries=recoveries,
        generation=read.count("generation", row[14]),
        definition_hash=read.maybe_text("definition_hash", row[15]),
        completed_count=completed_count,
        last_completion_order=last_completion_order,
    )


def corruption_failure(error: CorruptRunError) -> Failure:
    """How a corrupt run's error is stored and shown: a :class:`Failure` of type ``CorruptRunError``."""
    return Failure(
        step_name=error.step_name or "",
        error_type=type(error).__name__,
        message=error.message,
        attempts=0,
        retryable=False,
    )


def corrupt_value(workflow_id: str, column: str, value: object, why: str) -> CorruptRunError:
    """The error of a run whose ``column`` holds ``value``, found outside :func:`decode_run`."""
    return _Reader(workflow_id).corrupt(column, value, why)


def corrupt_run(row: Sequence[Any], step_rows: Iterable[Sequence[Any]], error: CorruptRunError) -> RunRecord:
    """The record standing for a run whose rows cannot be read: ``failed`` with ``error`` as its error.

    What can be read is kept (its names, times and the steps whose rows are sound); the step at fault is
    shown failed with the same error. Nothing may drive it: ``corruption`` says so.
    """
    failure = corruption_failure(error)
    steps: dict[str, StepRecord] = {}
    try:
        names = orjson.loads(row[8])
        steps = {name: StepRecord(name) for name in names if type(name) is str}
    except (orjson.JSONDecodeError, TypeError):
        pass
    for step_row in step_rows:
        try:
            step = step_from_row(step_row, error.workflow_id)
        except CorruptRunError as bad:
            if bad.step_name is not None:
                steps[bad.step_name] = StepRecord(bad.step_name, state=StepState.FAILED, error=failure)
            continue
        steps[step.name] = step

    def text(value: object) -> str:
        return value if type(value) is str else "?"

    def number(value: object) -> float:
        return value if type(value) in _NUMBERS else 0.0  # type: ignore[return-value]

    def count(value: object) -> int:
        return value if type(value) is int else 0

    return RunRecord(
        workflow_id=error.workflow_id,
        workflow_name=text(row[1]),
        workflow_version=text(row[2]),
        state=RunState.FAILED,
        input="null",
        correlation_id=text(row[7]),
        step_names=tuple(steps),
        steps=steps,
        created_at=number(row[9]),
        updated_at=number(row[10]),
        epoch=count(row[12]),
        recoveries=count(row[13]),
        generation=count(row[14]),
        definition_hash=row[15] if type(row[15]) is str else None,
        error=failure,
        corruption=error,
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
