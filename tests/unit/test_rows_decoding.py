"""Reading stored rows back: every column a row can hold wrongly makes its run read as failed, never raise.

The SQL backends' corruptions are exercised with real databases in ``tests/integration/test_corrupt_runs.py``;
here the decoder itself, column by column (NULLs, wrong types, unknown states, JSON that does not parse),
and the memory backend's claim of a run whose row went bad.
"""

from __future__ import annotations

from typing import Any

import pytest

from conveyor.backends import InMemoryBackend
from conveyor.backends.rows import decode_run, run_from_rows, step_to_row
from conveyor.core.records import Failure, NewRun, StepRecord
from conveyor.core.states import RunState, StepState
from conveyor.errors import CorruptRunError

FAILURE = Failure("a", "ValueError", "boom", 1).to_dict()

RUN_ROW: tuple[Any, ...] = (
    *("run-1", "orders", "1", "running", '{"x": 1}', None, None, "corr-1", '["a", "b"]'),
    *(1.0, 2.0, None, 1, 0, 0, "0123456789abcdef"),
)
STEP_ROW = step_to_row(StepRecord("a", StepState.COMPLETED, 1, '{"ok": true}', completion_order=1))

RUN_COLUMNS = {
    "workflow_id": 0,
    "workflow_name": 1,
    "workflow_version": 2,
    "state": 3,
    "input": 4,
    "output": 5,
    "error": 6,
    "correlation_id": 7,
    "step_names": 8,
    "created_at": 9,
    "updated_at": 10,
    "wake_at": 11,
    "epoch": 12,
    "recoveries": 13,
    "generation": 14,
    "definition_hash": 15,
}
STEP_COLUMNS = {
    "state": 1,
    "attempts": 2,
    "result": 3,
    "error": 4,
    "next_attempt_at": 5,
    "started_at": 6,
    "finished_at": 7,
    "completion_order": 8,
    "compensation_attempts": 9,
    "compensation_error": 10,
}

BAD_RUN_VALUES = [
    ("workflow_name", None),
    ("state", "bogus"),
    ("state", None),
    ("input", "{not json"),
    ("input", None),
    ("output", "[1,"),
    ("error", "oops"),
    ("error", '{"step_name": "a"}'),
    ("error", '{"step_name": 1, "error_type": "E", "message": "m", "attempts": 1}'),
    ("correlation_id", None),
    ("step_names", "nope"),
    ("step_names", '{"a": 1}'),
    ("step_names", "[1, 2]"),
    ("created_at", "yesterday"),
    ("updated_at", None),
    ("wake_at", "soon"),
    ("epoch", "1"),
    ("epoch", -1),
    ("recoveries", None),
    ("generation", 1.5),
    ("definition_hash", 5),
]
BAD_STEP_VALUES = [
    ("state", "bogus"),
    ("state", None),
    ("attempts", "many"),
    ("attempts", None),
    ("attempts", True),
    ("result", "{not json"),
    ("result", None),  # a completed step always has a result ("null" for None)
    ("error", "oops"),
    ("next_attempt_at", "later"),
    ("started_at", "then"),
    ("completion_order", "first"),
    ("compensation_attempts", None),
    ("compensation_error", "[]"),
]


def with_value(row: tuple[Any, ...], index: int, value: Any) -> tuple[Any, ...]:
    """``row`` with column ``index`` replaced by ``value``."""
    return (*row[:index], value, *row[index + 1 :])


def test_a_sound_row_reads_back_as_its_record() -> None:
    """The rows as written decode without complaint, step and run alike."""
    record = run_from_rows(RUN_ROW, [STEP_ROW])
    assert record.corruption is None
    assert record.state is RunState.RUNNING
    assert record.steps["a"].result == '{"ok": true}'
    assert record.steps["b"].state is StepState.PENDING
    assert record.completed_count == 1


@pytest.mark.parametrize(("column", "value"), BAD_RUN_VALUES)
def test_a_bad_run_column_makes_the_run_read_as_failed_naming_it(column: str, value: Any) -> None:
    """A run column holding what it cannot hold: the run reads as failed with CorruptRunError naming it."""
    row = with_value(RUN_ROW, RUN_COLUMNS[column], value)
    with pytest.raises(CorruptRunError) as raised:
        decode_run(row, [STEP_ROW])
    assert raised.value.column == column
    assert raised.value.workflow_id == "run-1"
    record = run_from_rows(row, [STEP_ROW])
    assert record.state is RunState.FAILED
    assert record.corruption is not None
    assert record.error is not None
    assert record.error.error_type == "CorruptRunError"
    assert f"column {column} holds {repr(value)[:80]}" in record.error.message
    assert not record.error.retryable


@pytest.mark.parametrize(("column", "value"), BAD_STEP_VALUES)
def test_a_bad_step_column_fails_the_run_and_shows_that_step_failed(column: str, value: Any) -> None:
    """A step column holding what it cannot hold: the run reads as failed, that step shown failed with
    the error, the other steps as they were."""
    step = with_value(STEP_ROW, STEP_COLUMNS[column], value)
    sound = step_to_row(StepRecord("b", StepState.PENDING, 2))
    with pytest.raises(CorruptRunError) as raised:
        decode_run(RUN_ROW, [step, sound])
    assert (raised.value.column, raised.value.step_name) == (column, "a")
    record = run_from_rows(RUN_ROW, iter([step, sound]))  # a cursor is read once: still both rows
    assert record.state is RunState.FAILED
    assert record.error is not None
    assert "step 'a'" in record.error.message
    assert record.steps["a"].state is StepState.FAILED
    assert record.steps["a"].error == record.error
    assert record.steps["b"].attempts == 2


def test_a_step_row_of_the_wrong_width_is_corrupt() -> None:
    """A step row missing columns (a PostgreSQL steps entry that is not a step's array) is corrupt."""
    with pytest.raises(CorruptRunError, match="not a step's row"):
        decode_run(RUN_ROW, [("a", "completed", 1)])


def test_the_memory_backend_fails_a_claimed_run_whose_step_row_went_bad() -> None:
    """A worker's claim of a run whose step row cannot be read fails that run and returns the others."""
    backend = InMemoryBackend()
    for workflow_id in ("bad", "good"):
        backend.submit_run(NewRun(workflow_id, "orders", "1", "{}", f"corr-{workflow_id}", ("a",)), now=1.0)
    backend._steps[("bad", "a")] = with_value(step_to_row(StepRecord("a")), 1, "bogus")
    backend._recorded_steps["bad"] = ("a",)

    claimed = backend.claim_runs(owner="w", limit=10, lease_seconds=60, max_recoveries=5)

    assert [record.workflow_id for record in claimed] == ["good"]
    failed = backend.load_run("bad")
    assert failed is not None
    assert failed.state is RunState.FAILED
    assert failed.error is not None
    assert "'bogus'" in failed.error.message
    assert backend.claim_runs(owner="w", limit=10, lease_seconds=60, max_recoveries=5) == []


def test_running_a_corrupt_memory_run_again_returns_it_failed_and_ends_it() -> None:
    """In process, a run whose step row went bad: run() on its id returns it failed with CorruptRunError
    and stores it failed, so that no worker claims it; retry() refuses it."""
    from conveyor import Conveyor, Flow, task

    @task
    def only(x: int) -> int:
        return x

    flow = Flow("memory-corrupt").then(only).build()
    backend = InMemoryBackend()
    app = Conveyor(backend, workflows=[flow])
    app.run(flow, 1, workflow_id="bad")
    backend._changing["bad"] = ("running", *backend._changing["bad"][1:])
    backend._active["bad"] = None
    backend._steps[("bad", "only")] = with_value(backend._steps[("bad", "only")], 2, "many")

    status = app.run(flow, 1, workflow_id="bad")

    assert status.is_failed()
    assert status.error() is not None
    assert status.error().error_type == "CorruptRunError"  # type: ignore[union-attr]
    assert backend._changing["bad"][0] == "failed"
    assert backend.claim_runs(owner="w", limit=10, lease_seconds=60, max_recoveries=5) == []
    with pytest.raises(CorruptRunError, match="column attempts holds 'many'"):
        app.retry("bad")
