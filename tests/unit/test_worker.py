"""The worker, in this process, on the memory and SQLite backends: claims, drives, releases, leases."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from conveyor import (
    Flow,
    InMemoryBackend,
    RetryPolicy,
    RunState,
    SqliteBackend,
    get_workflow_status,
    run_durable_workflow,
    start_workflow,
    task,
)
from conveyor.backends.base import Backend
from conveyor.engine.worker import Worker
from conveyor.errors import InvalidArgumentError


@task
def add_one(value: int) -> int:
    return value + 1


@task
def double(value: int) -> int:
    return value * 2


CHAIN = Flow("chain").then(add_one).then(double).build()


@pytest.fixture(params=["memory", "sqlite"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """A backend workers share: memory, or a SQLite file."""
    chosen: Backend = InMemoryBackend() if request.param == "memory" else SqliteBackend(tmp_path / "w.db")
    yield chosen
    chosen.close()


def test_a_worker_runs_every_submitted_run_to_completion(backend: Backend) -> None:
    """Runs started with start_workflow are claimed and completed by a worker."""
    handles = [start_workflow(CHAIN, f"run-{n}", n, backend) for n in range(20)]
    stats = Worker(backend, [CHAIN], concurrency=4).run(until_idle=True)
    assert [handle.result(timeout=5) for handle in handles] == [(n + 1) * 2 for n in range(20)]
    assert stats.claimed == 20
    assert stats.finished == 20


def test_starting_without_a_backend_is_refused_naming_what_to_pass() -> None:
    """start_workflow has no default backend (workers must read the same one): a clear conveyor error."""
    with pytest.raises(InvalidArgumentError, match="needs the backend the workers read"):
        start_workflow(CHAIN, "no-backend", 1)


def test_starting_the_same_id_twice_gives_the_same_run(backend: Backend) -> None:
    """A second start_workflow with an existing id returns a handle on the first run."""
    first = start_workflow(CHAIN, "same", 1, backend)
    second = start_workflow(CHAIN, "same", 100, backend)
    Worker(backend, [CHAIN]).run(until_idle=True)
    assert first.result(timeout=5) == second.result(timeout=5) == 4


def test_a_run_waiting_for_a_retry_holds_no_slot(backend: Backend) -> None:
    """With one slot, a run backing off is handed back and another run completes meanwhile."""
    attempts: list[str] = []

    @task(retries=RetryPolicy(max_retries=1, initial_delay_secs=0.3, backoff="fixed"))
    def flaky(value: str) -> str:
        attempts.append(value)
        if value == "slow" and attempts.count("slow") == 1:
            raise ConnectionError("gateway timeout")
        return value

    workflow = Flow("flaky").then(flaky).build()
    slow = start_workflow(workflow, "slow", "slow", backend)
    fast = start_workflow(workflow, "fast", "fast", backend)
    stats = Worker(backend, [workflow], concurrency=1).run(until_idle=True)
    assert slow.result(timeout=5) == "slow"
    assert fast.result(timeout=5) == "fast"
    assert attempts == ["slow", "fast", "slow"]
    assert stats.released == 1
    assert get_workflow_status("slow", backend).step("flaky").attempts == 2


def test_a_worker_only_claims_workflows_it_knows(backend: Backend) -> None:
    """A run of a workflow the worker does not have is left for another worker."""
    other = Flow("other").then(add_one).build()
    handle = start_workflow(other, "other-1", 1, backend)
    stats = Worker(backend, [CHAIN]).run(until_idle=True)
    assert stats.claimed == 0
    assert handle.status().state is RunState.PENDING
    Worker(backend, [other]).run(until_idle=True)
    assert handle.result(timeout=5) == 2


def test_a_stopped_worker_lets_the_step_in_flight_finish(backend: Backend) -> None:
    """stop() during a step: the step completes within the grace period and the worker returns."""
    started = threading.Event()

    @task
    def slow(value: int) -> int:
        started.set()
        time.sleep(0.2)
        return value

    workflow = Flow("slow").then(slow).then(add_one).build()
    handle = start_workflow(workflow, "s", 1, backend)
    worker = Worker(backend, [workflow], shutdown_grace_seconds=5)
    thread = threading.Thread(target=worker.run)
    thread.start()
    assert started.wait(5)
    worker.stop()
    thread.join(10)
    assert not thread.is_alive()
    status = handle.status()
    assert status.step("slow").attempts == 1
    assert status.is_completed()


def test_an_inline_run_with_a_live_worker_lease_is_waited_on_not_stolen(backend: Backend) -> None:
    """run_durable_workflow on a run a worker holds waits for the worker's result."""
    release = threading.Event()

    @task
    def gated(value: int) -> int:
        release.wait(5)
        return value + 10

    workflow = Flow("gated").then(gated).build()
    start_workflow(workflow, "g", 1, backend)
    worker = Worker(backend, [workflow], lease_seconds=30)
    thread = threading.Thread(target=worker.run, kwargs={"until_idle": True})
    thread.start()
    deadline = time.monotonic() + 5
    while get_workflow_status("g", backend).state is RunState.PENDING:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    threading.Timer(0.1, release.set).start()
    status = run_durable_workflow(workflow, "g", 1, backend)
    thread.join(10)
    assert status.output() == 11
    assert status.recoveries == 0


def test_a_waiting_run_is_picked_up_when_due_after_its_worker_stopped(backend: Backend) -> None:
    """The worker that handed a backing-off run back stops; a new worker runs the retry when it is due."""
    attempts: list[float] = []

    @task(retries=RetryPolicy(max_retries=1, initial_delay_secs=0.3, backoff="fixed"))
    def flaky(value: str) -> str:
        attempts.append(time.monotonic())
        if len(attempts) == 1:
            raise ConnectionError("gateway timeout")
        return value

    workflow = Flow("restart").then(flaky).build()
    handle = start_workflow(workflow, "r", "ok", backend)
    first = Worker(backend, [workflow])
    thread = threading.Thread(target=first.run)
    thread.start()
    deadline = time.monotonic() + 5
    while first.stats.released == 0:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    first.stop()
    thread.join(5)
    assert handle.status().step("flaky").state.value == "retrying"
    Worker(backend, [workflow]).run(until_idle=True)
    assert handle.result(timeout=5) == "ok"
    assert attempts[1] - attempts[0] >= 0.3


def test_an_unexpected_error_while_driving_hands_the_run_back_and_the_slot_lives_on() -> None:
    """A bug-like error escaping the driver is logged, the run goes back, and the same slot completes it."""

    class Flaky(InMemoryBackend):
        failures = 1

        def record_checkpoint(self, checkpoint: Any) -> None:
            if self.failures:
                self.failures -= 1
                raise RuntimeError("unexpected")
            super().record_checkpoint(checkpoint)

    backend = Flaky()
    handle = start_workflow(CHAIN, "once-broken", 1, backend)
    stats = Worker(backend, [CHAIN], concurrency=1).run(until_idle=True)
    assert handle.result(timeout=5) == 4
    assert stats.errors == 1
    assert stats.finished == 1


class BrokenCheckpoints(InMemoryBackend):
    """A memory backend whose checkpoint writes raise a bug-like error for one run, counting its claims."""

    def __init__(self, broken_run: str) -> None:
        super().__init__()
        self.broken_run = broken_run
        self.claims_of_broken_run = 0

    def claim_runs(self, **arguments: Any) -> Any:
        claimed = super().claim_runs(**arguments)
        self.claims_of_broken_run += sum(run.workflow_id == self.broken_run for run in claimed)
        return claimed

    def record_checkpoint(self, checkpoint: Any) -> None:
        if checkpoint.workflow_id == self.broken_run and checkpoint.state is RunState.RUNNING:
            raise RuntimeError("checkpoint writer bug")
        super().record_checkpoint(checkpoint)


def test_a_drive_that_keeps_failing_backs_off_and_ends_dead_lettered_naming_the_error() -> None:
    """An engine failure in every drive of one run: a few claims with a back-off between them (no hot loop),
    then the run is dead-lettered with an EngineError naming the failure; the other run completes."""
    backend = BrokenCheckpoints("broken")
    start_workflow(CHAIN, "broken", 1, backend)
    healthy = start_workflow(CHAIN, "healthy", 1, backend)
    worker = Worker(backend, [CHAIN], concurrency=2, lease_seconds=1.0, max_recoveries=2, group_commit=False)
    thread = threading.Thread(target=worker.run, kwargs={"until_idle": True}, daemon=True)
    started = time.monotonic()
    thread.start()
    thread.join(timeout=20)
    worker.stop()
    thread.join(timeout=5)
    status = get_workflow_status("broken", backend, CHAIN)
    assert status.state is RunState.DEAD_LETTERED
    error = status.error()
    assert error is not None
    assert (error.error_type, error.step_name, error.retryable) == ("EngineError", "add_one", False)
    assert "RuntimeError: checkpoint writer bug" in error.message
    assert backend.claims_of_broken_run == 3  # the first claim and max_recoveries more, no hot loop
    assert time.monotonic() - started >= 0.5 + 1.0  # backed off between them
    assert healthy.result(timeout=1) == 4
    assert worker.stats.errors == 3
