"""Maps (dynamic fan-out): a function called once per element of a list computed at run time, each element
checkpointed on its own. Pure settle and decide first, then the Flow builder on the memory backend."""

from __future__ import annotations

import threading
import time
from typing import Any

import orjson
import pydantic
import pytest

from conveyor import (
    Conveyor,
    CorruptRunError,
    DefinitionError,
    Flow,
    InMemoryBackend,
    NonRetryableError,
    RetryPolicy,
    RunState,
    Saga,
    StepContext,
    StepState,
    current_context,
    from_input,
    from_result,
    map_step,
    run_workflow,
    step,
    task,
)
from conveyor.core.decide import Action, compensation_order, decide
from conveyor.core.map_progress import MapProgress
from conveyor.core.maps import (
    ElementFailed,
    ElementSucceeded,
    ElementUndoFailed,
    ElementUndone,
    empty_map,
    settle_element,
)
from conveyor.core.records import RunRecord, pending_steps
from conveyor.core.settle import StepSucceeded, reopen_for_retry, settle
from conveyor.core.steering import cancel_run
from conveyor.definition.maps import element_flight
from conveyor.definition.workflow import Workflow
from conveyor.errors import InvalidTransitionError

# --- a workflow to settle by hand ---------------------------------------------------------------------------


def lines(order: dict[str, Any]) -> list[Any]:
    return list(order["lines"])


@task(compensate=lambda result: None, retries=RetryPolicy(max_attempts=3, initial_delay_secs=10))
def reserve(line: dict[str, Any]) -> dict[str, Any]:
    return line


def confirm(reservations: list[Any]) -> int:
    return len(reservations)


def reserving(*, undo: bool = True, max_concurrency: int = 2) -> Workflow:
    fn = (
        reserve if undo else task(retries=RetryPolicy(max_attempts=3, initial_delay_secs=10))(reserve.spec.fn)
    )
    return (
        Flow("reserving")
        .then(lines)
        .map(fn, max_concurrency=max_concurrency, name="reserve")
        .then(confirm)
        .build()
    )


def run_at_map(workflow: Workflow) -> RunRecord:
    """A run whose first step (lines) completed: the map is next."""
    run = RunRecord(
        "r1", workflow.name, workflow.version, RunState.RUNNING, "{}", "", workflow.step_names,
        pending_steps(workflow.step_names), 0.0, 0.0,
    )  # fmt: skip
    run, _ = settle(workflow, run, workflow.step("lines"), StepSucceeded('[{"n":0},{"n":1},{"n":2}]', 0, 1))
    return run


def succeeded(workflow: Workflow, run: RunRecord, index: int, *flying: int) -> RunRecord:
    spec = workflow.step("reserve")
    in_flight = {element_flight("reserve", i) for i in flying}
    outcome = ElementSucceeded(index, orjson.dumps({"n": index}).decode(), 2 + index, 3 + index)
    run, _ = settle_element(workflow, run, spec, outcome, 3, in_flight)
    return run


def failed(workflow: Workflow, run: RunRecord, index: int, *flying: int, retryable: bool = True) -> RunRecord:
    spec = workflow.step("reserve")
    in_flight = {element_flight("reserve", i) for i in flying}
    outcome = ElementFailed(index, ValueError("out of stock"), retryable, 5, 6)
    run, _ = settle_element(workflow, run, spec, outcome, 3, in_flight)
    return run


def progress_of(run: RunRecord) -> MapProgress:
    text = run.steps["reserve"].progress
    assert text is not None
    return MapProgress.read(text)


# --- pure: settle ----------------------------------------------------------------------------------------


def test_each_element_that_succeeds_is_one_checkpoint_of_the_steps_progress() -> None:
    """An element's success adds its result to the progress; the step stays pending, the run runs."""
    workflow = reserving()
    spec = workflow.step("reserve")
    run, checkpoint = settle_element(
        workflow, run_at_map(workflow), spec, ElementSucceeded(1, '{"n":1}', 2, 3), 3, frozenset()
    )
    record = run.steps["reserve"]
    assert (record.state, record.result, record.attempts) == (StepState.PENDING, None, 1)
    assert checkpoint.steps == (record,)
    assert progress_of(run).results == {1: {"n": 1}}
    assert progress_of(run).done == [1]
    assert (run.state, run.completed_count) == (RunState.RUNNING, 1)


def test_the_last_element_completes_the_step_with_every_result_in_the_order_of_the_list() -> None:
    """Elements finishing 2, 0, 1 give the result [0, 1, 2]; the step gets a completion order."""
    workflow = reserving()
    run = run_at_map(workflow)
    for index in (2, 0, 1):
        run = succeeded(workflow, run, index)
    record = run.steps["reserve"]
    assert record.state is StepState.COMPLETED
    assert orjson.loads(record.result or "") == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert record.completion_order == 2
    assert progress_of(run).done == [2, 0, 1]  # kept, for the undo's order
    assert run.completed_count == 2


def test_a_map_that_is_the_last_step_completes_the_run_with_its_list_as_output() -> None:
    """The run's output is the map's list."""
    workflow = Flow("only").map(reserve).build()
    run = RunRecord(
        "r1", workflow.name, workflow.version, RunState.RUNNING, '[{"n":0}]', "", workflow.step_names,
        pending_steps(workflow.step_names), 0.0, 0.0,
    )  # fmt: skip
    run, checkpoint = settle_element(
        workflow, run, workflow.step("reserve"), ElementSucceeded(0, '{"n":0}', 1, 2), 1, frozenset()
    )
    assert (run.state, run.output, checkpoint.output) == (RunState.COMPLETED, '[{"n":0}]', '[{"n":0}]')


def test_an_element_retry_waits_as_a_timer_only_when_nothing_else_can_start() -> None:
    """A retryable failure keeps the step pending while another element can start; once only retries are
    left, the step is retrying, due at the earliest, and the run wakes then."""
    workflow = reserving()
    run = failed(workflow, run_at_map(workflow), 0, 1)  # 1 in flight, 2 not started
    record = run.steps["reserve"]
    assert (record.state, record.next_attempt_at) == (StepState.PENDING, None)
    assert progress_of(run).retry_at == {0: 16.0}
    assert progress_of(run).attempts == {0: 1}
    assert record.error is not None
    assert record.error.message == "element 0 of 3: out of stock"
    run = succeeded(workflow, run, 2, 1)  # only 1 (in flight) and 0 (waiting) left
    record = run.steps["reserve"]
    assert (record.state, record.next_attempt_at, run.wake_at) == (StepState.RETRYING, 16.0, 16.0)
    assert decide(workflow, run, 10.0).action is Action.WAIT_UNTIL


def test_an_element_failing_for_good_fails_the_step_but_the_run_waits_for_the_elements_in_flight() -> None:
    """The step fails and the run stops starting anything; an element still running is recorded when it
    ends, and only then does the run compensate its succeeded elements."""
    workflow = reserving()
    run = succeeded(workflow, run_at_map(workflow), 0, 1, 2)
    run = failed(workflow, run, 2, 1, retryable=False)
    record = run.steps["reserve"]
    assert record.state is StepState.FAILED
    assert run.state is RunState.RUNNING  # element 1 still runs
    assert run.error is not None
    assert run.error.message == "element 2 of 3: out of stock"
    in_flight = {element_flight("reserve", 1)}
    assert decide(workflow, run, 7.0, in_flight).action is Action.WAIT_FOR_IN_FLIGHT
    run = succeeded(workflow, run, 1)
    assert run.steps["reserve"].state is StepState.FAILED
    assert progress_of(run).done == [0, 1]
    assert run.state is RunState.COMPENSATING
    decision = decide(workflow, run, 8.0)
    assert (decision.action, decision.steps[0].name) == (Action.RUN_COMPENSATION, "reserve")


def test_a_failed_map_without_an_undo_fails_the_run() -> None:
    """Nothing to undo: the run ends failed."""
    workflow = reserving(undo=False)
    run = succeeded(workflow, run_at_map(workflow), 0)
    run = failed(workflow, run, 1, retryable=False)
    assert run.state is RunState.FAILED


def test_the_undo_runs_once_per_succeeded_element_newest_first_each_recorded() -> None:
    """Undone elements are recorded one by one; the last one ends the step compensated, and an element
    undone already cannot be undone again."""
    workflow = reserving()
    run = run_at_map(workflow)
    run = succeeded(workflow, run, 1)
    run = succeeded(workflow, run, 0)
    run = failed(workflow, run, 2, retryable=False)
    assert progress_of(run).next_undo() == 0
    spec = workflow.step("reserve")
    run, _ = settle_element(workflow, run, spec, ElementUndone(0, 9), 3, frozenset())
    assert (run.steps["reserve"].state, progress_of(run).undone) == (StepState.COMPENSATING, [0])
    assert progress_of(run).next_undo() == 1
    with pytest.raises(ValueError, match="no result left to undo"):
        settle_element(workflow, run, spec, ElementUndone(0, 10), 3, frozenset())
    run, _ = settle_element(workflow, run, spec, ElementUndone(1, 10), 3, frozenset())
    assert run.steps["reserve"].state is StepState.COMPENSATED
    assert run.steps["reserve"].compensation_attempts == 2
    assert run.state is RunState.COMPENSATED  # lines has no undo


def test_an_element_undo_that_gives_up_leaves_the_others_to_run_and_ends_compensation_failed() -> None:
    """A retryable undo failure waits (compensating, due); one for good moves on to the next element."""
    workflow = reserving()
    run = succeeded(workflow, run_at_map(workflow), 0)
    run = succeeded(workflow, run, 1)
    run = failed(workflow, run, 2, retryable=False)
    spec = workflow.step("reserve")
    run, _ = settle_element(
        workflow, run, spec, ElementUndoFailed(1, OSError("down"), True, 9), 3, frozenset()
    )
    record = run.steps["reserve"]
    assert record.state is StepState.COMPENSATING
    assert record.next_attempt_at is not None
    assert record.next_attempt_at > 9
    assert decide(workflow, run, 9.5).action is Action.WAIT_UNTIL
    run, _ = settle_element(
        workflow, run, spec, ElementUndoFailed(1, OSError("down"), False, 20), 3, frozenset()
    )
    assert progress_of(run).undo_failed == [1]
    assert progress_of(run).next_undo() == 0
    run, _ = settle_element(workflow, run, spec, ElementUndone(0, 21), 3, frozenset())
    assert run.steps["reserve"].state is StepState.COMPENSATION_FAILED
    assert run.state is RunState.COMPENSATION_FAILED


def test_a_completed_map_is_undone_at_its_place_and_a_map_that_did_not_complete_first() -> None:
    """In the compensation order a completed map sits at its completion order, with its elements undone
    newest first; a map cut short comes before every completed step."""
    workflow = reserving()
    run = run_at_map(workflow)
    for index in (2, 0, 1):
        run = succeeded(workflow, run, index)
    with_undo = Flow("w").then(task(compensate=lambda r: None)(lines)).map(reserve, name="reserve").build()
    assert [record.name for record in compensation_order(workflow, run)] == ["reserve"]
    assert progress_of(run).next_undo() == 1
    partial = run_at_map(with_undo)
    partial = succeeded(with_undo, partial, 0)
    assert [record.name for record in compensation_order(with_undo, partial)] == ["reserve", "lines"]


def test_an_empty_map_completes_at_once_and_has_nothing_to_undo() -> None:
    """An empty list: the step completes with [] and is not in the compensation order."""
    workflow = reserving()
    run, _ = empty_map(workflow, run_at_map(workflow), workflow.step("reserve"), 2, frozenset())
    assert (run.steps["reserve"].state, run.steps["reserve"].result) == (StepState.COMPLETED, "[]")
    assert compensation_order(workflow, run) == []


def test_a_cancel_mid_map_undoes_its_succeeded_elements_once_those_in_flight_end() -> None:
    """cancel_run sees the map's succeeded elements as something to undo; while elements of it are in
    flight, decide waits for them before undoing any."""
    workflow = reserving()
    run = succeeded(workflow, run_at_map(workflow), 0, 1)
    cancelled = cancel_run(workflow, run, "customer changed their mind", 5)
    assert cancelled is not None
    run = cancelled[0]
    assert run.state is RunState.COMPENSATING
    assert decide(workflow, run, 6, {element_flight("reserve", 1)}).action is Action.WAIT_FOR_IN_FLIGHT
    run = succeeded(workflow, run, 1)
    decision = decide(workflow, run, 7)
    assert (decision.action, decision.steps[0].name) == (Action.RUN_COMPENSATION, "reserve")
    assert progress_of(run).next_undo() == 1


def test_a_retry_by_hand_keeps_a_failed_maps_succeeded_elements_unless_they_were_undone() -> None:
    """Not undone (no undo): the succeeded elements are kept, the failed one runs again with fresh
    attempts. Undone: the map starts over."""
    workflow = reserving(undo=False)
    run = succeeded(workflow, run_at_map(workflow), 0)
    run = failed(workflow, run, 1, retryable=False)
    assert run.state is RunState.FAILED
    reopened, _ = reopen_for_retry(workflow, run, 20)
    record = reopened.steps["reserve"]
    assert record.state is StepState.PENDING
    assert progress_of(reopened).results == {0: {"n": 0}}
    assert progress_of(reopened).attempts == {0: 1}
    assert progress_of(reopened).failed == []
    undone_workflow = reserving()
    run = succeeded(undone_workflow, run_at_map(undone_workflow), 0)
    run = failed(undone_workflow, run, 1, retryable=False)
    run, _ = settle_element(undone_workflow, run, undone_workflow.step("reserve"), ElementUndone(0, 9), 3, ())  # type: ignore[arg-type]
    assert run.state is RunState.COMPENSATED
    reopened, _ = reopen_for_retry(undone_workflow, run, 20)
    assert reopened.steps["reserve"].progress is None


def test_a_map_step_may_not_be_undone_before_it_ran() -> None:
    """An undo of a map with no result to undo is refused, as any impossible outcome is."""
    workflow = reserving()
    with pytest.raises(ValueError, match="no result left to undo"):
        settle_element(workflow, run_at_map(workflow), workflow.step("reserve"), ElementUndone(0, 1), 3, ())  # type: ignore[arg-type]
    run = succeeded(workflow, run_at_map(workflow), 0)
    with pytest.raises(ValueError, match="already ended"):
        succeeded(workflow, run, 0)


def test_the_elements_to_start_respect_the_limit_the_flight_and_the_retry_times() -> None:
    """to_start: unfinished, not flying, retry due; never more in flight than the limit; none once one
    failed for good."""
    progress = MapProgress(5, results={0: 1}, done=[0], retry_at={1: 10.0})
    assert progress.to_start({2}, 5.0, 3) == [3, 4]
    assert progress.to_start({2}, 5.0, 2) == [3]
    assert progress.to_start({2}, 10.0, 4) == [1, 3, 4]
    assert progress.to_start({2, 3}, 5.0, 2) == []
    progress.failed.append(4)
    assert progress.to_start(set(), 5.0, 4) == []


def test_a_stored_progress_that_is_not_a_maps_is_a_corrupt_run() -> None:
    """A progress missing a map's fields raises CorruptRunError naming the step and the column."""
    with pytest.raises(CorruptRunError, match="the progress of map step 'reserve'") as raised:
        MapProgress.read('{"iteration": 2}', "reserve")
    assert raised.value.step_name == "reserve"
    assert MapProgress.read(MapProgress(2, results={1: [1]}, done=[1]).text()) == MapProgress(
        2, results={1: [1]}, done=[1]
    )


def test_the_definition_hash_covers_the_maps_concurrency() -> None:
    """max_concurrency is part of the definition."""
    assert reserving().definition_hash == reserving().definition_hash
    assert reserving(max_concurrency=3).definition_hash != reserving().definition_hash


def test_a_plain_step_still_cannot_be_undone_from_failed() -> None:
    """The transitions maps add are theirs alone: a plain failed step is not compensated."""
    workflow = Flow("plain").then(reserve).build()
    run = RunRecord(
        "r1", workflow.name, workflow.version, RunState.RUNNING, "{}", "", workflow.step_names,
        pending_steps(workflow.step_names), 0.0, 0.0,
    )  # fmt: skip
    from conveyor.core.settle import StepFailed, UndoSucceeded

    run, _ = settle(workflow, run, workflow.step("reserve"), StepFailed(ValueError("x"), False, 0, 1))
    with pytest.raises(InvalidTransitionError, match="from 'failed' to 'compensated'"):
        settle(workflow, run, workflow.step("reserve"), UndoSucceeded(2))


# --- the Flow builder, driven on the memory backend --------------------------------------------------------


def out_of_stock() -> Exception:
    return NonRetryableError("no stock for this line")


class Counter:
    """How many elements run at once, at most."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.most = 0

    def __enter__(self) -> None:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)

    def __exit__(self, *_: object) -> None:
        with self.lock:
            self.now -= 1


def test_a_map_returns_each_elements_result_in_the_order_of_the_list_with_keys_of_their_own() -> None:
    """fn runs once per element; the next step gets the results in input order; each element's context
    has its index and an idempotency key ending :i."""
    keys: list[tuple[int | None, str]] = []

    def double(n: int, context: StepContext) -> int:
        time.sleep(0.01 * (5 - n))  # later elements finish first
        keys.append((context.index, context.idempotency_key))
        return n * 2

    workflow = Flow("doubling").map(double, max_concurrency=5).then(sum).build()
    app = Conveyor(InMemoryBackend(), workflows=[workflow])
    status = app.run("doubling", [0, 1, 2, 3, 4], workflow_id="d-1")
    assert status.output() == 20
    assert status.step("double").result == [0, 2, 4, 6, 8]
    assert sorted(keys) == [(i, f"d-1:double:{i}") for i in range(5)]
    assert status.step("double").elements == {
        "count": 5,
        "done": 5,
        "failed": 0,
        "undone": 0,
        "undo_failed": 0,
    }
    assert status.step("double").to_dict()["elements"]["done"] == 5


def test_no_more_than_max_concurrency_elements_run_at_once() -> None:
    """Twelve slow elements with max_concurrency=3: three at most run together (and three do)."""
    counter = Counter()

    def slow(n: int) -> int:
        with counter:
            time.sleep(0.03)
        return n

    workflow = Flow("slow").map(slow, max_concurrency=3).build()
    assert run_workflow(workflow, list(range(12))) == list(range(12))
    assert counter.most == 3


def test_a_map_over_something_else_than_a_list_fails_at_once_naming_the_type() -> None:
    """A dict where a list was expected: the step fails, not retried, and fn is never called."""
    calls: list[Any] = []
    workflow = Flow("odd", retries=RetryPolicy(max_attempts=3)).map(calls.append, name="each").build()
    app = Conveyor(InMemoryBackend(), workflows=[workflow])
    status = app.run("odd", {"lines": []}, workflow_id="odd-1")
    assert status.state is RunState.FAILED
    error = status.error()
    assert error is not None
    assert (error.error_type, error.attempts) == ("NonRetryableError", 1)
    assert "map 'each' maps over a list, and it received dict" in error.message
    assert calls == []


def test_an_empty_list_gives_an_empty_list() -> None:
    """Nothing to call: the step's result is []."""
    calls: list[Any] = []
    assert run_workflow(Flow("none").map(calls.append, name="each").build(), []) == []
    assert calls == []


def test_each_element_is_retried_on_its_own_by_the_steps_policy() -> None:
    """Element 1 fails twice and succeeds on its third attempt; the others run once each."""
    attempts: list[tuple[int, int]] = []

    @task(retries=RetryPolicy(max_attempts=3, initial_delay_secs=0))
    def flaky(n: int, context: StepContext) -> int:
        attempts.append((n, context.attempt))
        if n == 1 and context.attempt < 3:
            raise ValueError("flaky")
        return n

    status = Conveyor(InMemoryBackend(), workflows=[Flow("f").map(flaky).build()]).run(
        "f", [0, 1, 2], workflow_id="f-1"
    )
    assert status.output() == [0, 1, 2]
    assert sorted(attempts) == [(0, 1), (1, 1), (1, 2), (1, 3), (2, 1)]
    assert status.step("flaky").progress["attempts"] == {"0": 1, "1": 3, "2": 1}


def test_an_element_failing_for_good_undoes_exactly_the_succeeded_elements_newest_first() -> None:
    """Element 0 fails for good while 1 and 2 run: those end and are recorded, nothing else starts, and
    the undo runs once per succeeded element, newest first, with its result, its element and its key."""
    undone: list[tuple[int, int, str]] = []
    started: list[int] = []
    gate = threading.Event()

    def release(result: int, n: int) -> None:
        undone.append((result, n, current_context().idempotency_key))

    @task(compensate=release)
    def take(n: int) -> int:
        started.append(n)
        if n == 0:
            gate.set()
            time.sleep(0.02)  # 1 and 2 are under way
            raise out_of_stock()
        gate.wait(5)
        time.sleep(0.05)
        return n * 10

    workflow = Flow("taking").map(take, max_concurrency=3).build()
    status = Conveyor(InMemoryBackend(), workflows=[workflow]).run(
        "taking", [0, 1, 2, 3, 4, 5], workflow_id="t-1"
    )
    assert status.state is RunState.COMPENSATED
    assert sorted(started) == [0, 1, 2]  # nothing started once 0 failed
    record = status.step("take")
    assert sorted(record.progress["done"]) == [1, 2]
    assert [n for _result, n, _key in undone] == list(reversed(record.progress["done"]))
    assert all(result == n * 10 for result, n, _key in undone)
    assert {key for _r, _n, key in undone} == {"t-1:take:1:undo", "t-1:take:2:undo"}
    assert record.state is StepState.COMPENSATED
    assert record.elements == {"count": 6, "done": 2, "failed": 1, "undone": 2, "undo_failed": 0}
    error = status.error()
    assert error is not None
    assert error.message == "element 0 of 6: no stock for this line"


def test_a_later_failure_undoes_a_completed_maps_elements_newest_first() -> None:
    """The step after the map fails for good: each element is undone, newest first, then the steps
    before the map."""
    undone: list[str] = []

    @task(compensate=lambda result: undone.append(f"line {result}"))
    def book(n: int) -> int:
        time.sleep(0.01 * (3 - n))
        return n

    @task(compensate=lambda result: undone.append("order"))
    def order(value: list[int]) -> list[int]:
        return value

    def charge(booked: list[int]) -> None:
        raise out_of_stock()

    workflow = Flow("booking").then(order).map(book, max_concurrency=3).then(charge).build()
    app = Conveyor(InMemoryBackend(), workflows=[workflow])
    status = app.run("booking", [0, 1, 2], workflow_id="b-1")
    assert status.state is RunState.COMPENSATED
    done = status.step("book").progress["done"]
    assert undone == [f"line {n}" for n in reversed(done)] + ["order"]


def test_a_run_cancelled_mid_map_undoes_the_elements_that_succeeded_and_ends_cancelled() -> None:
    """A cancel while elements run: nothing new starts, those running end and are recorded, and every
    succeeded element is undone, newest first."""
    undone: list[int] = []
    started: list[int] = []
    cancelled = threading.Event()
    app = Conveyor(InMemoryBackend())

    @task(compensate=lambda result: undone.append(result))
    def ship(n: int, context: StepContext) -> int:
        started.append(n)
        if n == 1:
            app.cancel(context.workflow_id, "customer changed their mind")
            cancelled.set()
        else:  # the other slot ends only once the cancel was asked for, however loaded the machine
            cancelled.wait(10)
        return n

    app.register(Flow("shipping").map(ship, max_concurrency=2).build())
    status = app.run("shipping", list(range(6)), workflow_id="s-1")
    assert status.state is RunState.CANCELLED
    assert status.cancel_reason == "customer changed their mind"
    done = status.step("ship").progress["done"]
    assert sorted(started) == sorted(done) == [0, 1]
    assert undone == list(reversed(done))


class Reservation(pydantic.BaseModel):
    """What a reservation step returns."""

    sku: str


def test_a_maps_result_list_is_decoded_as_the_function_declares() -> None:
    """A map that returns models: the run's output is a list of them."""

    def reserve_line(sku: str) -> Reservation:
        return Reservation(sku=sku)

    workflow = Flow("models").map(reserve_line).build()
    app = Conveyor(InMemoryBackend(), workflows=[workflow])
    assert app.run("models", ["a", "b"], workflow_id="m-1").output() == [
        Reservation(sku="a"),
        Reservation(sku="b"),
    ]


def test_map_definition_errors_are_clear() -> None:
    """A bad max_concurrency, a function that takes nothing, or more than one value."""
    with pytest.raises(DefinitionError, match="max_concurrency of map 'reserve' of flow 'x'"):
        Flow("x").map(reserve, max_concurrency=0)

    def nothing() -> int:
        return 1

    def two(a: int, b: int) -> int:
        return a + b

    with pytest.raises(DefinitionError, match="takes no value"):
        Flow("x").map(nothing)
    with pytest.raises(DefinitionError, match="one element of the list at a time"):
        Flow("x").map(two)


# --- workflow classes ------------------------------------------------------------------------------------

released: list[tuple[str, str]] = []


class Ordering(Saga):
    """A class map: one reservation per order line, the lines from validate's result."""

    @step
    def validate(self, order_id: str, lines: list[dict[str, Any]]) -> dict[str, Any]:
        return {"order_id": order_id, "lines": lines}

    @map_step(over=from_result("validate", "lines"), max_concurrency=2, order_id=from_input("order_id"))
    def reserve(self, line: dict[str, Any], order_id: str, context: StepContext) -> dict[str, Any]:
        return {"reservation_id": f"{order_id}-{line['sku']}", "key": context.idempotency_key}

    @reserve.undo
    def release(self, reservation_id: str, line: dict[str, Any]) -> None:
        released.append((reservation_id, line["sku"]))

    @step(reservations=from_result("reserve"))
    def charge(self, reservations: list[dict[str, Any]]) -> int:
        if len(reservations) > 2:
            raise NonRetryableError("card declined")
        return len(reservations)


def test_a_class_map_step_gets_each_element_first_and_its_other_arguments_as_bound() -> None:
    """@map_step(over=...): the element in the first parameter, the others bound as a @step's; the next step
    reads the list of results."""
    app = Conveyor(InMemoryBackend(), workflows=[Ordering])
    status = app.run(Ordering, {"order_id": "o1", "lines": [{"sku": "a"}, {"sku": "b"}]}, workflow_id="c-1")
    assert status.step("charge").result == 2
    assert status.step("reserve").result == [
        {"reservation_id": "o1-a", "key": "c-1:reserve:0"},
        {"reservation_id": "o1-b", "key": "c-1:reserve:1"},
    ]
    assert Ordering.workflow.step("reserve").depends_on == ("validate",)


def test_a_class_map_steps_undo_runs_per_element_newest_first_with_its_fields_and_element() -> None:
    """A later step fails: the undo gets each element's result fields and its element, newest first."""
    released.clear()
    app = Conveyor(InMemoryBackend(), workflows=[Ordering])
    lines = [{"sku": "a"}, {"sku": "b"}, {"sku": "c"}]
    status = app.run(Ordering, {"order_id": "o2", "lines": lines}, workflow_id="c-2")
    assert status.state is RunState.COMPENSATED
    done = status.step("reserve").progress["done"]
    assert released == [(f"o2-{lines[i]['sku']}", lines[i]["sku"]) for i in reversed(done)]


def test_map_step_declaration_errors_are_clear() -> None:
    """over= must be a source; the element's parameter may not be bound too; a method must take one."""
    with pytest.raises(DefinitionError, match="over= of a map step names the list"):
        map_step(over="lines")  # type: ignore[arg-type]
    with pytest.raises(
        DefinitionError, match="binds 'line', the parameter each element of over= is given in"
    ):

        class Twice(Saga):
            @map_step(over=from_input("lines"), line=from_input("line"))
            def reserve(self, line: dict[str, Any]) -> None: ...

    with pytest.raises(DefinitionError, match="takes no element"):

        class Nothing(Saga):
            @map_step(over=from_input("lines"))
            def reserve(self) -> None: ...

    with pytest.raises(DefinitionError, match="max_concurrency of a map step"):
        map_step(over=from_input("lines"), max_concurrency=0)


def test_a_waiting_child_is_undone_before_a_map_and_the_map_before_the_steps_it_followed() -> None:
    """The whole compensation order of a run with a child waiting after a completed map: the child is
    cancelled first, then the map's elements, then the step before them."""
    child = Flow("shipping").then(confirm).build()
    workflow = (
        Flow("w")
        .then(task(compensate=lambda r: None)(lines))
        .map(reserve, name="reserve")
        .then_flow(child, name="ship")
        .build()
    )
    run = run_at_map(workflow)
    for index in (0, 1, 2):
        run = succeeded(workflow, run, index)
    assert run.steps["reserve"].state is StepState.COMPLETED
    run.steps["ship"] = run.steps["ship"]._replace(state=StepState.WAITING, started_at=9.0)
    assert [record.name for record in compensation_order(workflow, run)] == ["ship", "reserve", "lines"]
