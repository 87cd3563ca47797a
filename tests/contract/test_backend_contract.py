"""The backend contract, written once and run against every backend (see ``conftest.BACKENDS``)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from conveyor.backends import Backend
from conveyor.core.records import Checkpoint, Failure, NewRun, RunRecord, StepRecord
from conveyor.core.states import FINAL_RUN_STATES, RunState, StepState
from conveyor.errors import BackendError, LeaseLostError

NewRunFactory = Callable[..., NewRun]

T0 = 1_700_000_000.25
"""When the run is first started."""
T1 = 1_700_000_010.5
T2 = 1_700_000_020.75
T3 = 1_700_000_030.125

BOOM = Failure(
    step_name="a",
    error_type="ConnectionError",
    message='gateway said "no" — ünïcödé',
    attempts=2,
    retryable=True,
    traceback='Traceback (most recent call last):\n  File "x.py", line 1\nConnectionError: no\n',
)
UNDO_BOOM = Failure(
    step_name="a",
    error_type="RefundError",
    message="refund refused",
    attempts=3,
    retryable=False,
    traceback="tb",
)


def checkpoint(
    workflow_id: str = "run-1",
    *,
    epoch: int = 1,
    steps: tuple[StepRecord, ...] = (),
    state: RunState = RunState.RUNNING,
    output: str | None = None,
    error: Failure | None = None,
    wake_at: float | None = None,
    at: float = T1,
) -> Checkpoint:
    """A checkpoint with keyword defaults."""
    return Checkpoint(
        workflow_id=workflow_id,
        epoch=epoch,
        steps=steps,
        state=state,
        output=output,
        error=error,
        wake_at=wake_at,
        at=at,
    )


def completed(name: str, order: int, result: str = '{"ok": true}') -> StepRecord:
    """A step that completed on its first attempt, ``order``-th in the run."""
    return StepRecord(
        name=name,
        state=StepState.COMPLETED,
        attempts=1,
        result=result,
        started_at=T1 - 1.5,
        finished_at=T1,
        completion_order=order,
    )


def must_load(backend: Backend, workflow_id: str = "run-1") -> RunRecord:
    """Load a run that must exist."""
    record = backend.load_run(workflow_id)
    assert record is not None, f"run {workflow_id!r} is missing"
    return record


# --- the protocol -------------------------------------------------------------------------------------


def test_backend_satisfies_the_backend_protocol(backend: Backend) -> None:
    """Every backend is an instance of the runtime-checkable Backend protocol."""
    assert isinstance(backend, Backend)


# --- start_run: creating --------------------------------------------------------------------------------


def test_start_run_creates_a_run_at_epoch_one_with_every_step_pending(
    backend: Backend, new_run: NewRunFactory
) -> None:
    """A first start_run creates the run: created=True, epoch 1, no recoveries, all steps pending."""
    record, created = backend.start_run(new_run(), owner="worker-1", now=T0)

    assert created is True
    assert record.workflow_id == "run-1"
    assert record.workflow_name == "orders"
    assert record.workflow_version == "1"
    assert record.state is RunState.RUNNING
    assert record.input == '{"x": 1}'
    assert record.correlation_id == "corr-run-1"
    assert record.step_names == ("a", "b", "c")
    assert record.steps == {"a": StepRecord("a"), "b": StepRecord("b"), "c": StepRecord("c")}
    assert record.epoch == 1
    assert record.recoveries == 0
    assert record.created_at == T0
    assert record.updated_at == T0
    assert record.output is None
    assert record.error is None
    assert record.wake_at is None
    assert record.completed_count == 0
    assert record.last_completion_order == 0
    assert record.is_final is False


def test_created_run_loads_back_equal_to_what_start_run_returned(
    backend: Backend, new_run: NewRunFactory
) -> None:
    """load_run right after creation returns a record equal to the one start_run returned."""
    record, _ = backend.start_run(new_run(), owner="worker-1", now=T0)

    loaded = must_load(backend)

    assert loaded == record
    assert list(loaded.steps) == ["a", "b", "c"]
    assert all(step.state is StepState.PENDING for step in loaded.steps.values())


def test_start_run_records_the_state_the_new_run_asks_for(backend: Backend, new_run: NewRunFactory) -> None:
    """A NewRun with state PENDING is recorded (and loaded) as pending, not running."""
    run = new_run()
    run.state = RunState.PENDING

    record, created = backend.start_run(run, owner="worker-1", now=T0)

    assert created is True
    assert record.state is RunState.PENDING
    assert must_load(backend).state is RunState.PENDING


def test_start_run_keeps_runs_with_different_ids_apart(backend: Backend, new_run: NewRunFactory) -> None:
    """Two workflow ids are two runs: each is created, and writing one leaves the other untouched."""
    _, first_created = backend.start_run(new_run("run-1"), owner="w", now=T0)
    _, second_created = backend.start_run(new_run("run-2", steps=("x",)), owner="w", now=T0)
    backend.record_checkpoint(checkpoint("run-1", steps=(completed("a", 1),), state=RunState.COMPLETED))

    other = must_load(backend, "run-2")

    assert (first_created, second_created) == (True, True)
    assert other.state is RunState.RUNNING
    assert other.step_names == ("x",)
    assert other.steps == {"x": StepRecord("x")}
    assert other.updated_at == T0
    assert must_load(backend, "run-1").state is RunState.COMPLETED


def test_start_run_that_is_not_durable_still_persists_the_run(
    backend: Backend, new_run: NewRunFactory
) -> None:
    """durable=False only relaxes flushing: the run is created and can be loaded and checkpointed."""
    record, created = backend.start_run(new_run(), owner="worker-1", now=T0, durable=False)
    backend.record_checkpoint(checkpoint(steps=(completed("a", 1),)))

    loaded = must_load(backend)

    assert created is True
    assert record.epoch == 1
    assert loaded.epoch == 1
    assert loaded.input == '{"x": 1}'
    assert loaded.steps["a"] == completed("a", 1)


def test_take_over_that_is_not_durable_still_persists_the_new_epoch(
    backend: Backend, new_run: NewRunFactory
) -> None:
    """A take-over with durable=False still records the bumped epoch and recoveries."""
    backend.start_run(new_run(), owner="worker-1", now=T0)
    backend.start_run(new_run(), owner="worker-2", now=T1, durable=False)

    loaded = must_load(backend)

    assert (loaded.epoch, loaded.recoveries, loaded.updated_at) == (2, 1, T1)


# --- start_run: taking over -----------------------------------------------------------------------------


def test_starting_a_running_run_again_takes_it_over(backend: Backend, new_run: NewRunFactory) -> None:
    """start_run on an unfinished run returns created=False, epoch 2, recoveries 1, updated_at now."""
    backend.start_run(new_run(), owner="worker-1", now=T0)

    record, created = backend.start_run(new_run(), owner="worker-2", now=T1)

    assert created is False
    assert record.epoch == 2
    assert record.recoveries == 1
    assert record.created_at == T0
    assert record.updated_at == T1
    assert record.state is RunState.RUNNING
    assert record.input == '{"x": 1}'
    assert record.correlation_id == "corr-run-1"
    assert record.step_names == ("a", "b", "c")


def test_take_over_is_recorded_so_load_run_sees_the_new_epoch(
    backend: Backend, new_run: NewRunFactory
) -> None:
    """After a take-over, load_run returns the same record start_run returned (epoch 2, recoveries 1)."""
    backend.start_run(new_run(), owner="worker-1", now=T0)
    record, _ = backend.start_run(new_run(), owner="worker-2", now=T1)

    loaded = must_load(backend)

    assert loaded == record
    assert (loaded.epoch, loaded.recoveries) == (2, 1)


def test_take_over_returns_the_steps_recorded_so_far(backend: Backend, new_run: NewRunFactory) -> None:
    """A take-over returns the steps already checkpointed, the others still pending."""
    backend.start_run(new_run(), owner="worker-1", now=T0)
    retrying = StepRecord(
        name="b",
        state=StepState.RETRYING,
        attempts=2,
        error=BOOM,
        next_attempt_at=T2,
        started_at=T1 - 0.5,
        finished_at=T1,
    )
    backend.record_checkpoint(checkpoint(steps=(completed("a", 1), retrying), wake_at=T2))

    record, created = backend.start_run(new_run(), owner="worker-2", now=T3)

    assert created is False
    assert record.steps == {"a": completed("a", 1), "b": retrying, "c": StepRecord("c")}
    assert list(record.steps) == ["a", "b", "c"]
    assert record.completed_count == 1
    assert record.last_completion_order == 1
    assert record.wake_at == T2
    assert record.updated_at == T3


def test_each_take_over_bumps_epoch_and_recoveries_again(backend: Backend, new_run: NewRunFactory) -> None:
    """Three starts of one unfinished run leave it at epoch 3 with 2 recoveries."""
    backend.start_run(new_run(), owner="worker-1", now=T0)
    backend.start_run(new_run(), owner="worker-2", now=T1)

    record, created = backend.start_run(new_run(), owner="worker-3", now=T2)

    assert created is False
    assert (record.epoch, record.recoveries) == (3, 2)
    assert (must_load(backend).epoch, must_load(backend).recoveries) == (3, 2)


def test_take_over_keeps_the_runs_state_output_and_error(backend: Backend, new_run: NewRunFactory) -> None:
    """Taking over a compensating run changes only epoch, recoveries and updated_at."""
    backend.start_run(new_run(), owner="worker-1", now=T0)
    backend.record_checkpoint(
        checkpoint(steps=(completed("a", 1),), state=RunState.COMPENSATING, error=BOOM, wake_at=T2)
    )
    before = must_load(backend)

    record, _ = backend.start_run(new_run(), owner="worker-2", now=T3)

    assert record.state is RunState.COMPENSATING
    assert record.error == BOOM
    assert record.wake_at == T2
    assert record.output is None
    assert record.steps == before.steps
    assert (record.epoch, record.recoveries, record.updated_at) == (2, 1, T3)


def test_starting_a_completed_run_returns_it_unchanged(backend: Backend, new_run: NewRunFactory) -> None:
    """start_run on a completed run returns it as recorded: created=False, epoch not bumped."""
    backend.start_run(new_run(), owner="worker-1", now=T0)
    steps = (completed("a", 1), completed("b", 2), completed("c", 3))
    backend.record_checkpoint(checkpoint(steps=steps, state=RunState.COMPLETED, output='{"total": 3}'))
    before = must_load(backend)

    record, created = backend.start_run(new_run(), owner="worker-2", now=T3)

    assert created is False
    assert record == before
    assert record.state is RunState.COMPLETED
    assert record.output == '{"total": 3}'
    assert (record.epoch, record.recoveries) == (1, 0)
    assert record.updated_at == T1
    assert record.completed_count == 3
    assert record.last_completion_order == 3
    assert must_load(backend) == before


@pytest.mark.parametrize("final_state", sorted(FINAL_RUN_STATES), ids=str)
def test_starting_any_ended_run_does_not_take_it_over(
    backend: Backend, new_run: NewRunFactory, final_state: RunState
) -> None:
    """Every final run state makes start_run return the run without bumping its epoch."""
    backend.start_run(new_run(), owner="worker-1", now=T0)
    backend.record_checkpoint(checkpoint(state=final_state))

    record, created = backend.start_run(new_run(), owner="worker-2", now=T3)

    assert created is False
    assert record.state is final_state
    assert (record.epoch, record.recoveries, record.updated_at) == (1, 0, T1)
    assert must_load(backend).epoch == 1


def test_checkpoint_at_the_taken_over_epoch_is_accepted(backend: Backend, new_run: NewRunFactory) -> None:
    """The new owner's checkpoint (epoch 2) is written; it keeps the epoch, and recording a step (progress)
    sets recoveries back to 0."""
    backend.start_run(new_run(), owner="worker-1", now=T0)
    backend.start_run(new_run(), owner="worker-2", now=T1)
    assert must_load(backend).recoveries == 1

    backend.record_checkpoint(checkpoint(epoch=2, steps=(completed("a", 1),), at=T2))

    loaded = must_load(backend)
    assert loaded.steps["a"] == completed("a", 1)
    assert (loaded.epoch, loaded.recoveries, loaded.updated_at) == (2, 0, T2)


def test_a_checkpoint_without_a_step_keeps_the_recoveries_counted(
    backend: Backend, new_run: NewRunFactory
) -> None:
    """Only a recorded step is progress: a checkpoint of the run alone leaves recoveries as they were, in a
    single write and in a batch alike."""
    backend.start_run(new_run(), owner="worker-1", now=T0)
    backend.start_run(new_run(), owner="worker-2", now=T1)

    backend.record_checkpoint(checkpoint(epoch=2, steps=(), at=T2))
    assert backend.record_checkpoints([checkpoint(epoch=2, steps=(), at=T2)]) == set()

    assert (must_load(backend).epoch, must_load(backend).recoveries) == (2, 1)
    assert backend.record_checkpoints([checkpoint(epoch=2, steps=(completed("a", 1),), at=T2)]) == set()
    assert must_load(backend).recoveries == 0


# --- record_checkpoint and load_run ---------------------------------------------------------------------


def test_checkpoint_writes_run_state_output_error_and_wake_at(
    backend: Backend, new_run: NewRunFactory
) -> None:
    """A checkpoint's state, output, error, wake_at and time are what load_run returns for the run."""
    backend.start_run(new_run(), owner="worker-1", now=T0)

    backend.record_checkpoint(
        checkpoint(state=RunState.COMPENSATING, output='{"partial": [1, 2]}', error=BOOM, wake_at=T3, at=T2)
    )

    loaded = must_load(backend)
    assert loaded.state is RunState.COMPENSATING
    assert loaded.output == '{"partial": [1, 2]}'
    assert loaded.error == BOOM
    assert loaded.wake_at == T3
    assert loaded.updated_at == T2
    assert loaded.created_at == T0
    assert (loaded.epoch, loaded.recoveries) == (1, 0)
    assert loaded.input == '{"x": 1}'
    assert loaded.correlation_id == "corr-run-1"
    assert loaded.step_names == ("a", "b", "c")


def test_checkpoint_clears_run_error_wake_at_and_output_when_given_none(
    backend: Backend, new_run: NewRunFactory
) -> None:
    """A later checkpoint with None output, error and wake_at stores None, not the earlier values."""
    backend.start_run(new_run(), owner="worker-1", now=T0)
    backend.record_checkpoint(checkpoint(output='"x"', error=BOOM, wake_at=T3, at=T1))

    backend.record_checkpoint(checkpoint(at=T2))

    loaded = must_load(backend)
    assert (loaded.output, loaded.error, loaded.wake_at, loaded.updated_at) == (None, None, None, T2)


def test_load_run_reads_back_every_step_field_exactly(backend: Backend, new_run: NewRunFactory) -> None:
    """Every StepRecord field, Failure objects included, is read back exactly as it was written."""
    backend.start_run(new_run(), owner="worker-1", now=T0)
    written = StepRecord(
        name="a",
        state=StepState.COMPENSATION_FAILED,
        attempts=4,
        result='{"id": "ü-42", "items": [1, 2.5, null]}',
        error=BOOM,
        next_attempt_at=T3,
        started_at=T1 + 0.001,
        finished_at=T2 + 0.002,
        completion_order=7,
        compensation_attempts=3,
        compensation_error=UNDO_BOOM,
    )

    backend.record_checkpoint(checkpoint(steps=(written,), state=RunState.COMPENSATION_FAILED))

    read = must_load(backend).steps["a"]
    assert read == written
    assert read.state is StepState.COMPENSATION_FAILED
    assert read.error == BOOM
    assert read.error is not None
    assert read.error.retryable is True
    assert read.error.traceback == BOOM.traceback
    assert read.compensation_error == UNDO_BOOM
    assert read.compensation_error is not None
    assert read.compensation_error.retryable is False
    assert read.next_attempt_at == T3
    assert read.completion_order == 7
    assert read.compensation_attempts == 3


def test_loaded_run_counts_completed_steps_and_last_completion_order(
    backend: Backend, new_run: NewRunFactory
) -> None:
    """load_run derives completed_count and last_completion_order from the recorded steps."""
    backend.start_run(new_run(), owner="worker-1", now=T0)
    compensated = StepRecord("a", state=StepState.COMPENSATED, attempts=1, completion_order=1)
    backend.record_checkpoint(checkpoint(steps=(compensated, completed("b", 2), completed("c", 5))))

    loaded = must_load(backend)

    assert loaded.completed_count == 2
    assert loaded.last_completion_order == 5


def test_checkpoint_with_several_steps_writes_them_all(backend: Backend, new_run: NewRunFactory) -> None:
    """One checkpoint carrying three step records writes all three."""
    backend.start_run(new_run(), owner="worker-1", now=T0)
    failed = StepRecord("c", state=StepState.FAILED, attempts=3, error=BOOM, finished_at=T1)
    steps = (completed("a", 1), completed("b", 2, result="[1, 2]"), failed)

    backend.record_checkpoint(checkpoint(steps=steps, state=RunState.COMPENSATING, error=BOOM))

    loaded = must_load(backend)
    assert loaded.steps == {"a": steps[0], "b": steps[1], "c": failed}
    assert list(loaded.steps) == ["a", "b", "c"]


def test_checkpoint_leaves_steps_it_does_not_carry_as_they_were(
    backend: Backend, new_run: NewRunFactory
) -> None:
    """A checkpoint carrying only step b keeps the earlier record of step a and leaves c pending."""
    backend.start_run(new_run(), owner="worker-1", now=T0)
    backend.record_checkpoint(checkpoint(steps=(completed("a", 1),), at=T1))

    backend.record_checkpoint(checkpoint(steps=(completed("b", 2),), at=T2))

    loaded = must_load(backend)
    assert loaded.steps == {"a": completed("a", 1), "b": completed("b", 2), "c": StepRecord("c")}


def test_checkpoint_without_steps_updates_only_the_run(backend: Backend, new_run: NewRunFactory) -> None:
    """A checkpoint with no step records changes the run row and leaves every step as it was."""
    backend.start_run(new_run(), owner="worker-1", now=T0)
    backend.record_checkpoint(checkpoint(steps=(completed("a", 1),), at=T1))

    backend.record_checkpoint(checkpoint(steps=(), state=RunState.CANCELLED, at=T2))

    loaded = must_load(backend)
    assert loaded.state is RunState.CANCELLED
    assert loaded.updated_at == T2
    assert loaded.steps == {"a": completed("a", 1), "b": StepRecord("b"), "c": StepRecord("c")}


def test_checkpoint_may_update_an_already_recorded_step(backend: Backend, new_run: NewRunFactory) -> None:
    """A step recorded as RETRYING and then as COMPLETED loads as the COMPLETED record alone."""
    backend.start_run(new_run(), owner="worker-1", now=T0)
    retrying = StepRecord(
        "a",
        state=StepState.RETRYING,
        attempts=1,
        error=BOOM,
        next_attempt_at=T2,
        started_at=T0,
        finished_at=T1,
    )
    backend.record_checkpoint(checkpoint(steps=(retrying,), wake_at=T2, at=T1))
    assert must_load(backend).steps["a"] == retrying

    done = StepRecord(
        "a",
        state=StepState.COMPLETED,
        attempts=2,
        result='"paid"',
        started_at=T2,
        finished_at=T3,
        completion_order=1,
    )
    backend.record_checkpoint(checkpoint(steps=(done,), at=T3))

    loaded = must_load(backend)
    assert loaded.steps["a"] == done
    assert loaded.steps["a"].error is None
    assert loaded.steps["a"].next_attempt_at is None
    assert loaded.steps == {"a": done, "b": StepRecord("b"), "c": StepRecord("c")}
    assert loaded.completed_count == 1


def test_checkpoint_of_a_step_the_run_does_not_name_is_kept(backend: Backend, new_run: NewRunFactory) -> None:
    """A step record whose name is not in the run's step_names is stored and loaded after the named ones."""
    backend.start_run(new_run(steps=("a",)), owner="worker-1", now=T0)

    backend.record_checkpoint(checkpoint(steps=(completed("a", 1), completed("legacy", 2))))

    loaded = must_load(backend)
    assert loaded.step_names == ("a",)
    assert loaded.steps == {"a": completed("a", 1), "legacy": completed("legacy", 2)}
    assert list(loaded.steps) == ["a", "legacy"]


def test_load_run_of_an_unknown_id_returns_none(backend: Backend, new_run: NewRunFactory) -> None:
    """load_run of a workflow_id never started returns None, also when other runs exist."""
    assert backend.load_run("nope") is None
    backend.start_run(new_run(), owner="worker-1", now=T0)
    assert backend.load_run("nope") is None
    assert backend.load_run("run-") is None


def test_changing_a_returned_record_does_not_change_the_stored_run(
    backend: Backend, new_run: NewRunFactory
) -> None:
    """Records handed out by start_run and load_run are copies: mutating them changes nothing stored."""
    record, _ = backend.start_run(new_run(), owner="worker-1", now=T0)
    record.state = RunState.FAILED
    record.epoch = 99
    record.steps["a"] = StepRecord("a", state=StepState.COMPLETED)
    loaded = must_load(backend)
    loaded.steps["b"] = StepRecord("b", attempts=5)
    loaded.steps.pop("c")

    again = must_load(backend)

    assert again.state is RunState.RUNNING
    assert again.epoch == 1
    assert again.steps == {"a": StepRecord("a"), "b": StepRecord("b"), "c": StepRecord("c")}


def test_a_written_step_record_cannot_be_changed_afterwards(backend: Backend, new_run: NewRunFactory) -> None:
    """Step records are values: one written in a checkpoint cannot change later, nor can the stored step."""
    backend.start_run(new_run(), owner="worker-1", now=T0)
    step = completed("a", 1)
    backend.record_checkpoint(checkpoint(steps=(step,)))

    with pytest.raises(AttributeError):
        step.state = StepState.COMPENSATED  # type: ignore[misc]

    assert must_load(backend).steps["a"] == completed("a", 1)


# --- fencing --------------------------------------------------------------------------------------------


def test_checkpoint_with_a_stale_epoch_raises_lease_lost(backend: Backend, new_run: NewRunFactory) -> None:
    """After a take-over, a checkpoint still carrying epoch 1 raises LeaseLostError naming the run."""
    backend.start_run(new_run(), owner="worker-1", now=T0)
    backend.start_run(new_run(), owner="worker-2", now=T1)

    with pytest.raises(LeaseLostError) as raised:
        backend.record_checkpoint(checkpoint(epoch=1, steps=(completed("a", 1),), at=T2))

    assert isinstance(raised.value, BackendError)
    assert raised.value.workflow_id == "run-1"


def test_refused_checkpoint_changes_neither_the_run_nor_its_steps(
    backend: Backend, new_run: NewRunFactory
) -> None:
    """A stale-epoch checkpoint leaves nothing half-written: run row and every step are as before."""
    backend.start_run(new_run(), owner="worker-1", now=T0)
    backend.record_checkpoint(checkpoint(steps=(completed("a", 1),), at=T1))
    backend.start_run(new_run(), owner="worker-2", now=T2)
    before = must_load(backend)

    stale = checkpoint(
        epoch=1,
        steps=(
            StepRecord("a", state=StepState.COMPENSATED, attempts=1, completion_order=1),
            completed("b", 2),
            StepRecord("c", state=StepState.FAILED, attempts=1, error=BOOM),
            completed("extra", 3),
        ),
        state=RunState.COMPLETED,
        output='"stale"',
        error=BOOM,
        wake_at=T3,
        at=T3,
    )
    with pytest.raises(LeaseLostError):
        backend.record_checkpoint(stale)

    after = must_load(backend)
    assert after == before
    assert after.state is RunState.RUNNING
    assert (after.output, after.error, after.wake_at, after.updated_at) == (None, None, None, T2)
    assert after.steps == {"a": completed("a", 1), "b": StepRecord("b"), "c": StepRecord("c")}
    assert (after.epoch, after.recoveries) == (2, 1)


def test_checkpoint_with_an_epoch_ahead_of_the_run_is_refused(
    backend: Backend, new_run: NewRunFactory
) -> None:
    """The fence is equality: a checkpoint carrying epoch 2 for a run at epoch 1 is refused too."""
    backend.start_run(new_run(), owner="worker-1", now=T0)
    before = must_load(backend)

    with pytest.raises(LeaseLostError):
        backend.record_checkpoint(checkpoint(epoch=2, steps=(completed("a", 1),), state=RunState.COMPLETED))

    assert must_load(backend) == before


def test_refused_writer_does_not_block_the_new_owner(backend: Backend, new_run: NewRunFactory) -> None:
    """After a stale checkpoint is refused, the current owner's checkpoint is written normally."""
    backend.start_run(new_run(), owner="worker-1", now=T0)
    backend.start_run(new_run(), owner="worker-2", now=T1)
    with pytest.raises(LeaseLostError):
        backend.record_checkpoint(checkpoint(epoch=1, steps=(completed("a", 1),)))

    backend.record_checkpoint(checkpoint(epoch=2, steps=(completed("b", 1),), at=T2))

    loaded = must_load(backend)
    assert loaded.steps == {"a": StepRecord("a"), "b": completed("b", 1), "c": StepRecord("c")}
    assert loaded.updated_at == T2


def test_checkpoint_for_an_unknown_run_raises_lease_lost_and_creates_nothing(backend: Backend) -> None:
    """A checkpoint for a run never started raises LeaseLostError and leaves no run behind."""
    with pytest.raises(LeaseLostError) as raised:
        backend.record_checkpoint(checkpoint("ghost", steps=(completed("a", 1),), state=RunState.COMPLETED))

    assert raised.value.workflow_id == "ghost"
    assert backend.load_run("ghost") is None


# --- threads --------------------------------------------------------------------------------------------

THREADS = 8
RUNS_PER_THREAD = 50


def test_backend_is_safe_to_share_between_threads(backend: Backend, new_run: NewRunFactory) -> None:
    """8 threads each start and checkpoint 50 runs of their own at once; every run loads correctly."""
    barrier = threading.Barrier(THREADS, timeout=30)

    def drive(thread: int) -> None:
        barrier.wait()
        for n in range(RUNS_PER_THREAD):
            workflow_id = f"t{thread}-r{n}"
            record, created = backend.start_run(new_run(workflow_id, ("a", "b")), owner=f"w{thread}", now=T0)
            assert (created, record.epoch) == (True, 1)
            retry = StepRecord("a", state=StepState.RETRYING, attempts=1, error=BOOM, next_attempt_at=T2)
            backend.record_checkpoint(checkpoint(workflow_id, steps=(retry,), wake_at=T2, at=T1))
            done = (completed("a", 1, result=f'"{workflow_id}"'), completed("b", 2, result=str(n)))
            backend.record_checkpoint(
                checkpoint(workflow_id, steps=done, state=RunState.COMPLETED, output=f'{{"n": {n}}}', at=T2)
            )

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        for future in [pool.submit(drive, thread) for thread in range(THREADS)]:
            future.result()

    for thread in range(THREADS):
        for n in range(RUNS_PER_THREAD):
            workflow_id = f"t{thread}-r{n}"
            loaded = must_load(backend, workflow_id)
            assert loaded.workflow_id == workflow_id
            assert loaded.correlation_id == f"corr-{workflow_id}"
            assert loaded.state is RunState.COMPLETED
            assert loaded.output == f'{{"n": {n}}}'
            assert (loaded.epoch, loaded.recoveries, loaded.updated_at) == (1, 0, T2)
            assert loaded.steps == {
                "a": completed("a", 1, result=f'"{workflow_id}"'),
                "b": completed("b", 2, result=str(n)),
            }


def test_concurrent_starts_of_one_run_create_it_once_and_hand_out_distinct_epochs(
    backend: Backend, new_run: NewRunFactory
) -> None:
    """8 threads starting the same workflow_id at once: one creates it, each gets its own epoch 1..8."""
    barrier = threading.Barrier(THREADS, timeout=30)

    def start(thread: int) -> tuple[int, bool]:
        barrier.wait()
        record, created = backend.start_run(new_run(), owner=f"w{thread}", now=T0)
        return record.epoch, created

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        results = list(pool.map(start, range(THREADS)))

    assert sorted(epoch for epoch, _ in results) == list(range(1, THREADS + 1))
    assert [created for _, created in results].count(True) == 1
    assert dict(results)[1] is True
    loaded = must_load(backend)
    assert (loaded.epoch, loaded.recoveries) == (THREADS, THREADS - 1)
