"""Loops: a body called until it returns LoopResult.done, each iteration that asks for another checkpointed
as the step's progress. Pure settle first, then the Flow builder, workflow classes and stored rows."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
import pytest

from conveyor import (
    Conveyor,
    CorruptRunError,
    DefinitionError,
    Flow,
    InMemoryBackend,
    LoopResult,
    RetryPolicy,
    RunState,
    Saga,
    StepContext,
    StepState,
    from_input,
    loop,
    run_workflow,
    step,
    task,
)
from conveyor.backends.rows import step_from_row, step_to_row
from conveyor.core.records import RunRecord, StepRecord, pending_steps
from conveyor.core.settle import StepFailed, StepProgressed, StepSucceeded, settle
from conveyor.definition.workflow import Workflow

seen: list[tuple[Any, int | None, str]] = []


@pytest.fixture(autouse=True)
def _forget() -> None:
    seen.clear()


@task
def count_to_three(n: int, context: StepContext) -> LoopResult[int]:
    seen.append((n, context.index, context.idempotency_key))
    return LoopResult.done(n * 10) if n >= 3 else LoopResult.again(n + 1)


@task
def report(total: int) -> str:
    return f"total {total}"


def counting(retries: RetryPolicy | None = None, **options: Any) -> Workflow:
    flow = Flow("counting", retries=retries)
    return flow.loop(count_to_three, **{"max_iterations": 10, **options}).then(report).build()


def fresh_run(workflow: Workflow) -> RunRecord:
    return RunRecord(
        "r1", workflow.name, workflow.version, RunState.RUNNING, "0", "", workflow.step_names,
        pending_steps(workflow.step_names), 0.0, 0.0,
    )  # fmt: skip


# --- pure: settle ----------------------------------------------------------------------------------------


def test_an_iteration_asking_for_another_is_one_checkpoint_of_progress() -> None:
    """StepProgressed leaves the step pending with its progress and a fresh count of attempts."""
    workflow = counting()
    spec = workflow.step("count_to_three")
    run, checkpoint = settle(
        workflow, fresh_run(workflow), spec, StepProgressed('{"iteration":1,"value":1}', 1, 2)
    )
    record = run.steps["count_to_three"]
    assert (record.state, record.attempts, record.progress) == (
        StepState.PENDING,
        0,
        '{"iteration":1,"value":1}',
    )
    assert checkpoint.steps == (record,)
    assert run.state is RunState.RUNNING
    assert run.completed_count == 0


def test_a_failed_iteration_keeps_the_progress_and_its_retry_resumes_there() -> None:
    """A retry of iteration n keeps progress; the next progress after it resets the attempts."""
    spec = counting().step("count_to_three")
    policy_workflow = (
        Flow("c")
        .loop(
            task(retries=RetryPolicy(max_attempts=3))(lambda n: LoopResult.done(n)),
            max_iterations=5,
            name="body",
        )
        .build()
    )
    body = policy_workflow.step("body")
    run, _ = settle(
        policy_workflow, fresh_run(policy_workflow), body, StepProgressed('{"iteration":1,"value":5}', 1, 2)
    )
    run, _ = settle(policy_workflow, run, body, StepFailed(ValueError("flaky"), True, 2, 3))
    record = run.steps["body"]
    assert (record.state, record.attempts, record.progress) == (
        StepState.RETRYING,
        1,
        '{"iteration":1,"value":5}',
    )
    assert run.wake_at == record.next_attempt_at
    run, _ = settle(policy_workflow, run, body, StepProgressed('{"iteration":2,"value":6}', 4, 5))
    record = run.steps["body"]
    assert (record.state, record.attempts, record.next_attempt_at) == (StepState.PENDING, 0, None)
    assert run.wake_at is None
    run, _ = settle(policy_workflow, run, body, StepSucceeded("6", 5, 6))
    assert run.steps["body"].progress is None  # a completed loop keeps only its result
    assert run.state is RunState.COMPLETED
    assert spec.control is not None


def test_the_definition_hash_covers_the_loop_and_its_limits() -> None:
    """A loop's max_iterations and on_max are part of the definition."""
    assert counting().definition_hash == counting().definition_hash
    assert counting(max_iterations=11).definition_hash != counting().definition_hash
    assert counting(on_max="exit").definition_hash != counting().definition_hash


# --- the Flow builder ------------------------------------------------------------------------------------


def test_a_loop_carries_its_value_from_iteration_to_iteration_until_done() -> None:
    """Each iteration gets the value the one before passed on; the next step gets the done value."""
    assert run_workflow(counting(), 0) == "total 30"
    assert [(n, index) for n, index, _key in seen] == [(0, 0), (1, 1), (2, 2), (3, 3)]


def test_each_iteration_has_an_idempotency_key_of_its_own() -> None:
    """The step's key, then :n, so a gateway sees each iteration as a call of its own."""
    app = Conveyor(InMemoryBackend(), workflows=[counting()])
    app.run("counting", 0, workflow_id="keys-1")
    assert [key for _n, _index, key in seen] == [f"keys-1:count_to_three:{n}" for n in range(4)]


def test_reaching_max_iterations_fails_the_step_or_exits_with_the_last_value() -> None:
    """on_max="fail": LoopLimitError, not retried; on_max="exit": the last value is the result."""
    app = Conveyor(
        InMemoryBackend(), workflows=[counting(max_iterations=2, retries=RetryPolicy(max_attempts=3))]
    )
    status = app.run("counting", 0, workflow_id="max-1")
    assert status.state is RunState.FAILED
    error = status.error()
    assert error is not None
    assert (error.error_type, error.attempts) == ("LoopLimitError", 1)
    assert "after 2 of max_iterations=2" in error.message
    assert run_workflow(Flow("exits").loop(count_to_three, max_iterations=2, on_max="exit").build(), 0) == 2


def test_a_body_that_returns_something_else_fails_the_step_clearly() -> None:
    """A loop body must return LoopResult.again or .done."""

    def not_a_loop(n: int) -> Any:
        return n

    app = Conveyor(InMemoryBackend(), workflows=[Flow("odd").loop(not_a_loop, max_iterations=3).build()])
    status = app.run("odd", 0, workflow_id="odd-1")
    error = status.error()
    assert error is not None
    assert "returned int, not LoopResult.again(value) or LoopResult.done(value)" in error.message


def test_a_failing_iteration_is_retried_at_that_iteration_never_before() -> None:
    """Iteration 2 fails once; its retry runs iteration 2 again, and 0 and 1 ran once each."""
    failures = [ValueError("flaky")]

    @task(retries=RetryPolicy(max_attempts=2, initial_delay_secs=0))
    def flaky(n: int, context: StepContext) -> LoopResult[int]:
        seen.append((n, context.index, context.idempotency_key))
        if n == 2 and failures:
            raise failures.pop()
        return LoopResult.done(n) if n >= 3 else LoopResult.again(n + 1)

    assert run_workflow(Flow("flaky").loop(flaky, max_iterations=9).build(), 0) == 3
    assert [n for n, _index, _key in seen] == [0, 1, 2, 2, 3]


def test_the_progress_of_a_loop_shows_in_its_status_while_it_loops() -> None:
    """Paused in iteration 1, the status shows the loop's progress: the next iteration and its value."""
    app = Conveyor(InMemoryBackend())

    @task
    def pausing(n: int, context: StepContext) -> LoopResult[int]:
        if n == 1:
            app.pause(context.workflow_id)
        return LoopResult.done(n) if n >= 3 else LoopResult.again(n + 1)

    app.register(Flow("pausing").loop(pausing, max_iterations=9).build())
    status = app.run("pausing", 0, workflow_id="p-1")
    assert status.is_paused()
    step_status = status.step("pausing")
    assert step_status.state is StepState.PENDING
    assert step_status.progress == {"iteration": 2, "value": 2}
    assert step_status.to_dict()["progress"] == {"iteration": 2, "value": 2}
    app.resume("p-1")
    assert app.run("pausing", 0, workflow_id="p-1").output() == 3


def test_loop_definition_errors_are_clear() -> None:
    """A bad max_iterations or on_max, a body that takes nothing or is declared to return something else."""
    with pytest.raises(DefinitionError, match="max_iterations of loop 'count_to_three'"):
        Flow("x").loop(count_to_three, max_iterations=0)
    with pytest.raises(
        DefinitionError, match="on_max of loop 'count_to_three' of flow 'x' must be 'fail' or 'exit'"
    ):
        Flow("x").loop(count_to_three, max_iterations=2, on_max="stop")  # type: ignore[arg-type]

    def nothing() -> LoopResult[int]:
        return LoopResult.done(1)

    def wrong(n: int) -> int:
        return n

    with pytest.raises(DefinitionError, match="takes no value"):
        Flow("x").loop(nothing, max_iterations=2)
    with pytest.raises(DefinitionError, match="declared to return <class 'int'>"):
        Flow("x").loop(wrong, max_iterations=2)


def test_a_loop_value_is_decoded_into_the_body_parameter_type() -> None:
    """The carried value crosses a checkpoint as JSON and comes back as the parameter's declared type."""

    @task
    def halve(amount: Decimal) -> LoopResult[Decimal]:
        assert isinstance(amount, Decimal)
        return LoopResult.done(amount) if amount < 1 else LoopResult.again(amount / 2)

    assert run_workflow(Flow("halving").loop(halve, max_iterations=20).build(), "10") == Decimal("0.625")


# --- workflow classes ------------------------------------------------------------------------------------


class Polling(Saga):
    """A class loop: polls a shipment until it is delivered; its first value comes from the input."""

    @loop(max_iterations=5, attempt=from_input("start"))
    def poll(self, attempt: int, carrier: str) -> LoopResult[dict[str, Any]]:
        seen.append((attempt, None, carrier))
        if attempt >= 2:
            return LoopResult.done({"delivered_after": attempt, "carrier": carrier})
        return LoopResult.again(attempt + 1)

    @step(result=from_input("carrier"))
    def after(self, result: str) -> str:
        return result


def test_a_class_loop_passes_its_value_in_its_first_parameter_and_binds_the_others_as_usual() -> None:
    """@loop: the first iteration's arguments are bound; later ones get the carried value first."""
    app = Conveyor(InMemoryBackend(), workflows=[Polling])
    status = app.run(Polling, {"start": 0, "carrier": "dhl"}, workflow_id="poll-1")
    assert status.is_completed()
    assert status.step("poll").result == {"delivered_after": 2, "carrier": "dhl"}
    assert seen == [(0, None, "dhl"), (1, None, "dhl"), (2, None, "dhl")]


# --- stored rows -----------------------------------------------------------------------------------------


def test_a_step_row_keeps_its_progress_and_a_row_from_before_progress_reads_as_none() -> None:
    """progress is the row's last column; an 11-column row (stored before it) reads with none."""
    record = StepRecord("poll", StepState.PENDING, progress='{"iteration":2,"value":[1]}')
    assert step_from_row(step_to_row(record)) == record
    assert step_from_row(step_to_row(record)[:11]).progress is None


def test_a_progress_that_is_not_json_is_a_corrupt_run_naming_the_column() -> None:
    """A progress column that does not parse raises CorruptRunError naming progress and the step."""
    row = (*step_to_row(StepRecord("poll"))[:11], "{not json")
    with pytest.raises(CorruptRunError) as raised:
        step_from_row(row, "run-1")
    assert (raised.value.column, raised.value.step_name) == ("progress", "poll")


def test_a_stored_progress_that_says_no_iteration_fails_the_loop_naming_it() -> None:
    """A progress that parses but says nothing of an iteration fails the step at once, not retried."""
    backend = InMemoryBackend()
    app = Conveyor(backend, workflows=[counting(retries=RetryPolicy(max_attempts=3))])
    app.start("counting", 0, workflow_id="bad-1")
    run = backend.load_run("bad-1")
    assert run is not None
    from conveyor.core.records import Checkpoint

    broken = StepRecord("count_to_three", progress=orjson.dumps({"something": 1}).decode())
    backend.record_checkpoint(
        Checkpoint("bad-1", run.epoch, (broken,), RunState.RUNNING, None, None, None, 1.0)
    )
    status = app.run("counting", 0, workflow_id="bad-1")
    error = status.error()
    assert error is not None
    assert "its stored progress" in error.message
    assert error.attempts == 1
