"""The step executor and the driver's use of it: where each call runs, what a drive returns, who owns the
threads."""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

import pytest

from conveyor import FakeClock, Flow, InMemoryBackend, LeaseLostError, RetryPolicy, RunState, task
from conveyor.core.records import Checkpoint, RunRecord
from conveyor.definition.workflow import Workflow
from conveyor.engine.api import new_run
from conveyor.engine.calls import StepCall
from conveyor.engine.driver import FINISHED, RunDriver, WaitUntil
from conveyor.engine.executor import PoolCall, StepExecutor


def started(workflow: Workflow, backend: InMemoryBackend, clock: Any, value: Any = 0) -> RunRecord:
    """A run of ``workflow`` recorded in ``backend``, ready to drive."""
    record, _ = backend.start_run(new_run(workflow, "w", value, None), owner="test", now=clock.now())
    return record


def drive(workflow: Workflow, executor: StepExecutor, value: Any = 0, clock: Any = None) -> RunRecord:
    """Drive a fresh in-memory run of ``workflow`` to its end on ``executor``."""
    clock = clock or FakeClock()
    backend = InMemoryBackend()
    run = started(workflow, backend, clock, value)
    return RunDriver(workflow, run, backend, clock, executor=executor).drive_to_end()


def thread_names() -> set[str]:
    return {f"{thread.name}:{thread.ident}" for thread in threading.enumerate()}


@pytest.fixture
def executor() -> Any:
    """An executor of the test's own, closed after it."""
    with StepExecutor() as owned:
        yield owned


def test_a_chain_of_sync_steps_runs_on_the_calling_thread_and_starts_no_thread(
    executor: StepExecutor,
) -> None:
    """The fast path: every step on the driving thread, and neither a loop nor a pool thread is started."""
    seen: list[threading.Thread] = []

    @task
    def first(value: int) -> int:
        seen.append(threading.current_thread())
        return value + 1

    @task
    def second(value: int) -> int:
        seen.append(threading.current_thread())
        return value * 2

    before = thread_names()
    run = drive(Flow("chain").then(first).then(second).build(), executor, 1)
    assert run.state is RunState.COMPLETED
    assert seen == [threading.current_thread()] * 2
    assert thread_names() == before


def test_with_no_pool_thread_to_take_them_every_branch_runs_on_the_driving_thread() -> None:
    """Branches no pool thread started are taken back and run by the driver: a fork needs no thread."""
    seen: list[str] = []

    def branch(name: str) -> Any:
        def body(value: int) -> str:
            seen.append(threading.current_thread().name)
            return name

        body.__name__ = body.__qualname__ = name
        return task(body)

    @task
    def join(results: dict[str, str]) -> list[str]:
        return sorted(results.values())

    workflow = (
        Flow("fork").fork().branch(branch("a")).branch(branch("b")).branch(branch("c")).join(join).build()
    )
    with StepExecutor(max_threads=0) as executor:
        run = drive(workflow, executor)
    assert run.state is RunState.COMPLETED
    assert run.output == '["a","b","c"]'
    assert seen == [threading.current_thread().name] * 3


def test_a_taken_back_call_lets_go_of_what_it_references() -> None:
    """A taken-back ticket waits in the pool's queue until a thread wakes, but no longer holds the call."""

    @task
    def step(value: int) -> int:
        return value

    workflow = Flow("one").then(step).build()
    backend, clock = InMemoryBackend(), FakeClock()
    call = StepCall(workflow.steps[0], started(workflow, backend, clock), {}, clock, clock.now())
    with StepExecutor(max_threads=0) as executor:
        executor.start(call, lambda _: None)
        ticket = call.ticket
        assert isinstance(ticket, PoolCall)
        assert ticket.call is call
        assert executor.take_back(call)
        assert (ticket.call, ticket.on_done) == (None, None)
        assert not executor.take_back(call)  # once only


def test_async_steps_run_on_the_loop_thread_of_the_executor_given() -> None:
    """Each executor runs async steps on its own loop thread, never on the driving thread."""
    seen: list[int | None] = []

    @task
    async def step(value: int) -> int:
        seen.append(threading.get_ident())
        return value + 1

    workflow = Flow("async").then(step).build()
    with StepExecutor() as one, StepExecutor() as other:
        assert drive(workflow, one).state is RunState.COMPLETED
        assert drive(workflow, other).state is RunState.COMPLETED
        assert drive(workflow, one).state is RunState.COMPLETED
    assert seen[0] == seen[2] != seen[1]
    assert threading.get_ident() not in seen


def test_close_stops_the_loop_thread_and_refuses_later_calls() -> None:
    """After close() the executor's loop thread has ended, and a call that needs it raises."""
    loop_threads: list[threading.Thread] = []

    @task
    async def step(value: int) -> int:
        loop_threads.append(threading.current_thread())
        return value

    workflow = Flow("async").then(step).build()
    executor = StepExecutor()
    drive(workflow, executor)
    executor.close()
    assert not loop_threads[0].is_alive()
    with pytest.raises(RuntimeError, match="closed"):
        drive(workflow, executor)


def test_closing_cancels_what_still_runs_on_the_loop() -> None:
    """An async call still awaiting when its executor closes is cancelled, not left pending."""
    cancelled = threading.Event()
    begun = threading.Event()

    async def forever() -> None:
        begun.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    @task
    async def step(value: int) -> None:
        await forever()

    workflow = Flow("hang").then(step).build()
    backend, clock = InMemoryBackend(), FakeClock()
    call = StepCall(workflow.steps[0], started(workflow, backend, clock), {}, clock, clock.now())
    ended: list[StepCall] = []
    executor = StepExecutor()
    executor.start(call, ended.append)
    assert begun.wait(5)
    executor.close()
    assert cancelled.is_set()
    assert len(ended) == 1
    assert isinstance(ended[0].error, asyncio.CancelledError)


def test_a_drive_returns_wait_until_for_a_timer_and_finished_at_the_end(executor: StepExecutor) -> None:
    """drive() stops at a retry's due time with WaitUntil(at) and, driven again then, returns FINISHED."""
    attempts: list[int] = []

    @task(retries=RetryPolicy(max_retries=1, initial_delay_secs=5))
    def flaky(value: int) -> int:
        attempts.append(value)
        if len(attempts) == 1:
            raise ConnectionError("try again")
        return value

    workflow = Flow("retry").then(flaky).build()
    backend, clock = InMemoryBackend(), FakeClock()
    run = started(workflow, backend, clock)
    driver = RunDriver(workflow, run, backend, clock, executor=executor)
    assert driver.drive() == WaitUntil(clock.now() + 5)
    clock.advance(5)
    assert driver.drive() is FINISHED
    assert driver.run.state is RunState.COMPLETED
    assert clock.sleeps == []


def test_a_drive_that_stops_on_an_error_cancels_its_async_calls_still_running(executor: StepExecutor) -> None:
    """A lost lease ends the drive; an async branch still in flight is cancelled, not left running."""
    cancelled = threading.Event()

    @task
    async def slow(value: int) -> str:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "slow"

    @task
    def quick(value: int) -> str:
        return "quick"

    @task
    def join(results: dict[str, str]) -> list[str]:
        return sorted(results)

    class Taken(InMemoryBackend):
        def record_checkpoint(self, checkpoint: Checkpoint) -> None:
            raise LeaseLostError("another process took the run over")

    workflow = Flow("fork").fork().branch(slow).branch(quick).join(join).build()
    backend, clock = Taken(), FakeClock()
    run = started(workflow, backend, clock)
    with pytest.raises(LeaseLostError):
        RunDriver(workflow, run, backend, clock, executor=executor).drive()
    assert cancelled.wait(5)


def test_driving_a_run_from_inside_an_async_step_is_refused(executor: StepExecutor) -> None:
    """An async step that drives another run with async steps on the same loop gets a clear error."""

    @task
    async def inner_step(value: int) -> int:
        return value

    inner = Flow("inner").then(inner_step).build()
    errors: list[str] = []

    @task
    async def outer_step(value: int) -> int:
        try:
            drive(inner, executor)
        except RuntimeError as exc:
            errors.append(str(exc))
        return value

    drive(Flow("outer").then(outer_step).build(), executor)
    assert errors == ["a run cannot be driven from inside one of its own async steps"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_runs_async_steps_on_a_loop_of_its_own(executor: StepExecutor) -> None:
    """The parent's loop thread does not survive a fork: the child's executor starts its own."""

    @task
    async def step(value: int) -> int:
        return value + 1

    workflow = Flow("async").then(step).build()
    assert drive(workflow, executor).state is RunState.COMPLETED  # the parent's loop is running
    child = os.fork()
    if child == 0:  # the child: drive once more, report through the exit status, leave at once
        ok = False
        try:
            ok = drive(workflow, executor).state is RunState.COMPLETED
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
