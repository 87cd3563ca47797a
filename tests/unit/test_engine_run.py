"""Running workflows: outputs, statuses, concurrency of fork branches, the step context, and run identity."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from conveyor import (
    ConveyorError,
    Flow,
    InMemoryBackend,
    InvalidArgumentError,
    RetryPolicy,
    RunNotFoundError,
    RunState,
    StepContext,
    StepState,
    WorkflowFailedError,
    WorkflowMismatchError,
    current_context,
    get_workflow_status,
    run_durable_workflow,
    run_durable_workflow_async,
    run_workflow,
    task,
)
from conveyor.core.records import NewRun


@task
def add_one(value: int) -> int:
    return value + 1


@task
def double(value: int) -> int:
    return value * 2


def test_run_workflow_returns_the_last_steps_result() -> None:
    """run_workflow runs a chain in memory and returns the last step's result."""
    assert run_workflow(Flow("math").then(add_one).then(double).build(), 4) == 10


def test_run_workflow_raises_naming_the_failed_step_and_chaining_its_error() -> None:
    """A failed in-memory run raises WorkflowFailedError with the step, attempts and original cause."""

    @task
    def explode(value: int) -> int:
        raise KeyError("missing sku")

    with pytest.raises(WorkflowFailedError) as raised:
        run_workflow(Flow("boom").then(add_one).then(explode).build(), 1)
    error = raised.value
    assert error.step_name == "explode"
    assert error.attempts == 1
    assert isinstance(error.__cause__, KeyError)
    assert "workflow 'boom' ended failed: step 'explode' failed after 1 attempt: KeyError" in str(error)


def test_status_records_every_step_with_state_attempts_duration_and_result() -> None:
    """The returned status lists each step in order, completed, with one attempt, a duration and result."""
    status = run_durable_workflow(
        Flow("math").then(add_one).then(double).build(), "m-1", 1, InMemoryBackend()
    )
    assert status.is_completed()
    assert not status.is_failed()
    assert not status.is_running()
    assert [(s.name, s.state, s.attempts, s.result) for s in status.steps] == [
        ("add_one", StepState.COMPLETED, 1, 2),
        ("double", StepState.COMPLETED, 1, 4),
    ]
    assert all(s.duration_seconds is not None and s.duration_seconds >= 0 for s in status.steps)
    assert status.completed_steps == ("add_one", "double")
    assert status.error() is None
    assert status.to_dict()["steps"][1]["result"] == 4


def test_a_second_run_with_the_same_id_runs_nothing_and_returns_the_stored_result() -> None:
    """Starting a finished run again returns it unchanged without executing any step."""
    calls: list[int] = []

    @task
    def counted(value: int) -> int:
        calls.append(value)
        return value

    backend = InMemoryBackend()
    workflow = Flow("once").then(counted).build()
    first = run_durable_workflow(workflow, "same", 5, backend)
    second = run_durable_workflow(workflow, "same", 999, backend)
    assert calls == [5]
    assert second.output() == first.output() == 5


def test_a_failed_run_is_not_run_again_by_starting_it_again() -> None:
    """A run that ended failed is returned as it is, not retried, when started again."""
    calls: list[int] = []

    @task
    def fails(value: int) -> int:
        calls.append(value)
        raise RuntimeError("no")

    backend = InMemoryBackend()
    workflow = Flow("fails").then(fails).build()
    run_durable_workflow(workflow, "f", 1, backend)
    status = run_durable_workflow(workflow, "f", 1, backend)
    assert status.state is RunState.FAILED
    assert calls == [1]


def test_get_workflow_status_reads_a_run_back_and_refuses_unknown_ids() -> None:
    """get_workflow_status returns the stored run; an unknown id raises RunNotFoundError."""
    backend = InMemoryBackend()
    run_durable_workflow(Flow("math").then(add_one).build(), "m-2", 1, backend)
    assert get_workflow_status("m-2", backend).output() == 2
    with pytest.raises(RunNotFoundError, match="no run 'nope'"):
        get_workflow_status("nope", backend)


def test_an_existing_id_of_another_workflow_is_refused() -> None:
    """Running workflow B under an id that workflow A holds raises WorkflowMismatchError."""
    backend = InMemoryBackend()
    run_durable_workflow(Flow("a").then(add_one).build(), "shared", 1, backend)
    with pytest.raises(WorkflowMismatchError, match="belongs to workflow 'a' v1, not 'b' v1"):
        run_durable_workflow(Flow("b").then(add_one).build(), "shared", 1, backend)


def test_an_unbuilt_flow_is_refused_with_a_hint() -> None:
    """Passing a Flow instead of a built Workflow says to call build()."""
    with pytest.raises(InvalidArgumentError, match=r"pass flow.build\(\) instead"):
        run_durable_workflow(Flow("x").then(add_one), "w", 1, InMemoryBackend())  # type: ignore[arg-type]


def test_something_that_is_not_a_backend_is_refused() -> None:
    """A backend argument that is not a conveyor backend is named in the error."""
    with pytest.raises(InvalidArgumentError, match="backend must be a conveyor backend"):
        run_durable_workflow(Flow("x").then(add_one).build(), "w", 1, "sqlite:///x.db")  # type: ignore[arg-type]


def test_without_a_backend_runs_are_kept_in_conveyor_db(tmp_path: Path) -> None:
    """With no backend and no $CONVEYOR_BACKEND, every spelling uses SQLite in ./conveyor.db."""
    script = (
        "from conveyor import Conveyor, Flow, Saga, run_durable_workflow, step, task\n"
        "@task\n"
        "def add_one(value: int) -> int:\n"
        "    return value + 1\n"
        "class Greet(Saga):\n"
        "    @step\n"
        "    def greet(self, name: str) -> str:\n"
        "        return 'hi ' + name\n"
        "print(run_durable_workflow(Flow('math').then(add_one).build(), 'd-1', 1).output())\n"
        "print(Greet.run(name='ada', workflow_id='g-1').success)\n"
        "print(Conveyor().status('g-1').state.value)\n"
    )
    environment = {key: value for key, value in os.environ.items() if key != "CONVEYOR_BACKEND"}
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=environment, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2", "True", "completed"]
    assert (tmp_path / "conveyor.db").exists()


def test_fork_branches_run_concurrently() -> None:
    """Two sync branches that each wait for the other can only finish if they run at the same time."""
    barrier = threading.Barrier(2, timeout=5)

    @task
    def left(value: int) -> str:
        barrier.wait()
        return "left"

    @task
    def right(value: int) -> str:
        barrier.wait()
        return "right"

    @task
    def join(results: dict[str, str]) -> list[str]:
        return sorted(results.values())

    workflow = Flow("fork").fork().branch(left).branch(right).join(join).build()
    assert run_workflow(workflow, 0) == ["left", "right"]


def test_many_quick_branches_all_run_once_whether_a_pool_thread_or_the_driver_takes_them() -> None:
    """Branches no pool thread picked up yet are run by the driving thread: each exactly once."""
    calls: list[str] = []
    lock = threading.Lock()

    def make(name: str) -> Any:
        def branch(value: int) -> str:
            with lock:
                calls.append(name)
            return f"{name}{value}"

        branch.__name__ = branch.__qualname__ = name
        return task(branch)

    names = ["a", "b", "c", "d", "e"]

    @task
    def join(results: dict[str, str]) -> list[str]:
        return sorted(results.values())

    fork = Flow("wide-fork").fork()
    for name in names:
        fork = fork.branch(make(name))
    workflow = fork.join(join).build()
    for number in range(200):
        assert run_workflow(workflow, number) == [f"{name}{number}" for name in names]
    assert sorted(calls) == sorted(names * 200)


def test_async_branches_run_concurrently_on_the_loop() -> None:
    """Two async branches waiting on each other complete together."""
    events: dict[str, asyncio.Event] = {}

    @task
    async def ping(value: int) -> str:
        events.setdefault("ping", asyncio.Event()).set()
        await asyncio.wait_for(events.setdefault("pong", asyncio.Event()).wait(), 5)
        return "ping"

    @task
    async def pong(value: int) -> str:
        events.setdefault("pong", asyncio.Event()).set()
        await asyncio.wait_for(events.setdefault("ping", asyncio.Event()).wait(), 5)
        return "pong"

    @task
    def join(results: dict[str, str]) -> dict[str, str]:
        return results

    workflow = Flow("async-fork").fork().branch(ping).branch(pong).join(join).build()
    assert run_workflow(workflow, 0) == {"ping": "ping", "pong": "pong"}


def test_a_branch_may_be_a_chain_keyed_by_its_name_or_last_task() -> None:
    """A chain branch is keyed by name= when given, else by its last task's name."""

    @task
    def triple(value: int) -> int:
        return value * 3

    @task
    def join(results: dict[str, int]) -> dict[str, int]:
        return results

    workflow = Flow("chains").fork().branch(add_one, double, name="add-then-double").branch(triple).join(join)
    assert run_workflow(workflow.build(), 3) == {"add-then-double": 8, "triple": 9}


def test_async_steps_run_and_mix_with_sync_ones() -> None:
    """An async step between sync ones runs on the loop and its result flows on."""

    @task
    async def slow_double(value: int) -> int:
        await asyncio.sleep(0)
        return value * 2

    workflow = Flow("mixed").then(add_one).then(slow_double).then(add_one, name="add_one_again").build()
    assert run_workflow(workflow, 1) == 5


def test_step_context_gives_ids_attempt_and_a_stable_idempotency_key() -> None:
    """A step sees its workflow_id, name, attempt, correlation_id, and the same key on every attempt."""
    seen: list[tuple[str, str, int, str, str]] = []

    @task(retries=RetryPolicy(max_retries=1, initial_delay_secs=0))
    def charge(value: int, ctx: StepContext) -> str:
        seen.append((ctx.workflow_id, ctx.step_name, ctx.attempt, ctx.correlation_id, ctx.idempotency_key))
        if ctx.attempt == 1:
            raise ConnectionError("gateway timeout")
        return ctx.idempotency_key

    status = run_durable_workflow(
        Flow("ctx").then(charge).build(), "order-9", 1, InMemoryBackend(), correlation_id="req_abc123"
    )
    assert status.output() == "order-9:charge"
    assert seen == [
        ("order-9", "charge", 1, "req_abc123", "order-9:charge"),
        ("order-9", "charge", 2, "req_abc123", "order-9:charge"),
    ]
    assert status.correlation_id == "req_abc123"


@pytest.mark.parametrize("is_async", [False, True])
def test_current_context_works_inside_sync_and_async_steps(is_async: bool) -> None:
    """current_context() returns the running step's context from inside the step."""

    def sync_step(value: int) -> str:
        return current_context().idempotency_key

    async def async_step(value: int) -> str:
        return current_context().idempotency_key

    step = task(name="keyed")(async_step if is_async else sync_step)
    status = run_durable_workflow(Flow("cc").then(step).build(), "run-7", 0, InMemoryBackend())
    assert status.output() == "run-7:keyed"


def test_current_context_outside_a_step_says_so() -> None:
    """Calling current_context() outside any step raises a clear error."""
    with pytest.raises(ConveyorError, match="outside a running step"):
        current_context()


def test_a_run_taken_over_by_another_process_refuses_the_old_drivers_write() -> None:
    """If another process takes the run over mid-step, this process's checkpoint is refused, and the caller
    gets the run as the new owner leaves it (here the new owner died too, so the caller drives it)."""
    backend = InMemoryBackend()
    calls: list[int] = []

    @task
    def slow(value: int) -> int:
        calls.append(value)
        if len(calls) == 1:  # another process finds our owner dead and takes the run: the epoch moves on
            held = backend.load_run("stolen")
            assert held is not None
            backend.start_run(
                NewRun("stolen", "steal", "1", "1", "c", ("slow",)),
                owner="other",
                now=0.0,
                take_over_from=held.owner,
            )
        return value

    status = run_durable_workflow(Flow("steal").then(slow).build(), "stolen", 1, backend)
    assert status.is_completed()
    assert calls == [1, 1]
    assert status.recoveries == 2


def test_the_async_twin_runs_the_workflow_from_async_code() -> None:
    """run_durable_workflow_async can be awaited from a running event loop."""

    async def main() -> Any:
        return await run_durable_workflow_async(Flow("a").then(add_one).build(), "a-1", 1, InMemoryBackend())

    assert asyncio.run(main()).output() == 2


def test_the_sync_api_works_inside_a_running_event_loop() -> None:
    """Calling run_workflow from async code with async steps still works (it drives on another thread)."""

    @task
    async def async_add(value: int) -> int:
        return value + 10

    async def main() -> Any:
        return run_workflow(Flow("nested").then(async_add).build(), 1)

    assert asyncio.run(main()) == 11


def test_correlation_ids_are_unique_and_a_forked_child_makes_its_own() -> None:
    """Runs get distinct 32-hex-digit correlation ids; a forked process never repeats its parent's."""
    from conveyor.engine import api
    from conveyor.runtime.ownership import PROCESS

    here = {api._CORRELATION_IDS.new() for _ in range(1000)}
    assert len(here) == 1000
    assert all(len(value) == 32 and int(value, 16) >= 0 for value in here)
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # the child: report its owner name and next correlation id, then leave at once
        os.write(writer, f"{PROCESS.name} {api._CORRELATION_IDS.new()}".encode())
        os._exit(0)
    os.close(writer)
    owner, correlation_id = os.read(reader, 1000).decode().split()
    os.waitpid(child, 0)
    assert owner != PROCESS.name
    assert correlation_id not in here
    assert correlation_id[:16] != next(iter(here))[:16]
