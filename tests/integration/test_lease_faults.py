"""A lease has one owner, in real processes: a worker never runs a step twice over itself (paused, or
its heartbeat failing), rides through its connections being killed, and only crashes without progress
count towards dead-lettering."""

from __future__ import annotations

import random
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import worker_app
from worker_support import count_completed, read_log, spawn_worker, starts_of, wait_until

from conveyor import Flow, RetryPolicy, RunState, StepContext, get_workflow_status, start_workflow, task
from conveyor.backends.base import Backend
from conveyor.backends.urls import open_backend
from conveyor.core.states import FINAL_RUN_STATES
from conveyor.engine.worker import Worker
from conveyor.errors import BackendError
from postgres_support import PostgresDatabase, terminate_sessions

FOUR_SLOTS = ("--concurrency", "4", "--lease-seconds", "1", "--poll-interval-seconds", "0.2")
"""Slots to spare: a worker with a free slot is one that could claim its own run again."""


def test_a_worker_paused_past_its_lease_with_no_other_worker_runs_the_step_once(
    database_url: str, tmp_path: Path
) -> None:
    """SIGSTOP for 1.6 s inside a 3 s step, lease 1 s, no other worker: the step runs once, the run ends."""
    log = tmp_path / "steps.log"
    backend = open_backend(database_url)
    start_workflow(worker_app.LONG, "long-1", {}, backend)
    worker = spawn_worker(database_url, log, *FOUR_SLOTS)
    try:
        wait_until(lambda: starts_of(log, "long") == 1, 20, "the long step to start")
        worker.send_signal(signal.SIGSTOP)
        time.sleep(1.6)
        worker.send_signal(signal.SIGCONT)
        wait_until(lambda: ended(backend, "long-1"), 30, "the run to end")
    finally:
        worker.send_signal(signal.SIGCONT)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(20) == 0
    status = get_workflow_status("long-1", backend)
    assert status.state is RunState.COMPLETED, status.error()
    assert (starts_of(log, "long"), starts_of(log, "after_long")) == (1, 1)
    backend.close()


def ended(backend: Backend, workflow_id: str) -> bool:
    """Whether the run has reached a final state."""
    return get_workflow_status(workflow_id, backend).state in FINAL_RUN_STATES


class RenewalsFail:
    """A real backend whose ``extend_leases`` raises BackendError while a window is open (else: itself)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.failing_until = 0.0
        self.failed_renewals = 0

    def fail_renewals_for(self, seconds: float) -> None:
        self.failing_until = time.monotonic() + seconds

    def extend_leases(self, **arguments: Any) -> set[str]:
        if time.monotonic() < self.failing_until:
            self.failed_renewals += 1
            raise BackendError("the heartbeat's connection was lost (a test fault)")
        return self.backend.extend_leases(**arguments)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.backend, name)


def test_a_heartbeat_failing_past_the_lease_with_no_other_worker_runs_the_step_once(
    database_url: str, tmp_path: Path
) -> None:
    """Renewals fail for 1.6 s inside a 3 s step, lease 1 s: no re-claim over itself; one run of each step."""
    backend = open_backend(database_url)
    flaky = RenewalsFail(backend)
    executions: list[str] = []

    @task
    def long(order: dict[str, Any]) -> dict[str, Any]:
        executions.append("long")
        flaky.fail_renewals_for(1.6)
        time.sleep(3.0)
        return order

    @task
    def after_long(order: dict[str, Any]) -> str:
        executions.append("after_long")
        return "long done"

    workflow = Flow("long").then(long).then(after_long).build()
    start_workflow(workflow, "long-1", {}, backend)
    worker = Worker(flaky, [workflow], concurrency=4, lease_seconds=1.0, poll_interval_seconds=0.2)  # type: ignore[arg-type]
    thread = threading.Thread(target=worker.run, kwargs={"until_idle": True}, daemon=True)
    thread.start()
    thread.join(timeout=30)
    worker.stop()
    thread.join(timeout=10)
    status = get_workflow_status("long-1", backend)
    assert flaky.failed_renewals >= 1
    assert executions == ["long", "after_long"]
    assert status.state is RunState.COMPLETED, status.error()
    assert worker.stats.leases_lost == 0
    backend.close()


def test_a_run_whose_worker_is_killed_once_in_every_step_completes(database_url: str, tmp_path: Path) -> None:
    """Ten steps, each killing its worker (os._exit) on its first attempt: ten kills, each after progress,
    never count up to dead-lettering (max 5 recoveries); every step runs twice and the run completes."""
    log, marks = tmp_path / "steps.log", tmp_path / "marks"
    marks.mkdir()
    backend = open_backend(database_url)
    start_workflow(worker_app.TEN_KILLS, "ten-1", 0, backend)
    options = ("--until-idle", "--lease-seconds", "0.2", "--max-recoveries", "5")
    exits = []
    for _ in range(15):
        if get_workflow_status("ten-1", backend).state in FINAL_RUN_STATES:
            break
        time.sleep(0.25)  # the killed worker's lease runs out
        exits.append(spawn_worker(database_url, log, *options, KILL_MARKS=str(marks)).wait(30))
    status = get_workflow_status("ten-1", backend)
    assert status.state is RunState.COMPLETED, status.error()
    assert status.output() == 10
    assert exits.count(3) == 10
    assert [starts_of(log, f"step{n}") for n in range(1, 11)] == [2] * 10
    backend.close()


@pytest.mark.postgres
def test_a_worker_rides_through_a_storm_of_killed_connections(
    postgres_database: PostgresDatabase, tmp_path: Path
) -> None:
    """pg_terminate_backend on every conveyor connection, every 0.1 s for 8 s, against one worker: it
    lives on, and every run completes (none is held by a slot that no longer drives it)."""
    log = tmp_path / "steps.log"
    url = postgres_database.url
    backend = open_backend(url)
    ids = [f"order-{n}" for n in range(300)]
    for run in ids:
        start_workflow(worker_app.ORDERS, run, {"id": run}, backend)
    options = ("--concurrency", "4", "--lease-seconds", "1", "--poll-interval-seconds", "1")
    worker = spawn_worker(url, log, *options, STEP_SECONDS="0.05")
    try:
        wait_until(lambda: len(read_log(log)) > 0, 20, "the first step")
        killed = 0
        storm_ends = time.monotonic() + 8.0
        while time.monotonic() < storm_ends:
            killed += terminate_sessions(postgres_database.server, postgres_database.name)
            time.sleep(0.1)
            assert worker.poll() is None, "the worker exited in the storm"
        assert killed > 10
        wait_until(lambda: count_completed(backend, ids) == len(ids), 60, "every run to complete")
        assert worker.poll() is None
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(30)
    output = (tmp_path / "workers.out").read_text()
    assert "Exception in thread" not in output
    assert code == 0
    backend.close()


class Unreliable:
    """A real backend of which a seeded third of the worker's calls raise BackendError before reaching it."""

    FLAKY = frozenset(
        {"claim_runs", "now", "next_wake_at", "release_run", "record_checkpoint", "extend_leases"}
    )

    def __init__(self, backend: Backend, seed: int) -> None:
        self.backend = backend
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.failed = 0

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.backend, name)
        if name not in self.FLAKY:
            return method

        def call(*arguments: Any, **keywords: Any) -> Any:
            with self.lock:
                fails = self.random.random() < 1 / 3
                self.failed += fails
            if fails:
                raise BackendError(
                    f"{name}: terminating connection due to administrator command (a test fault)"
                )
            return method(*arguments, **keywords)

        return call


def test_a_worker_rides_through_backend_errors_in_every_call(database_url: str) -> None:
    """A third of every kind of backend call fails: the worker and its slots live on, no run is held
    without being driven, and all 30 runs (some waiting on timers) complete."""
    real = open_backend(database_url)
    flaky = Unreliable(real, seed=7)
    attempts: dict[str, int] = {}

    @task(retries=RetryPolicy(max_retries=1, initial_delay_secs=0.05))
    def flaky_once(value: int, context: StepContext) -> int:
        attempts[context.workflow_id] = attempts.get(context.workflow_id, 0) + 1
        if attempts[context.workflow_id] == 1:
            raise ConnectionError("first attempt fails: the run waits on a timer")
        return value + 1

    @task
    def double(value: int) -> int:
        return value * 2

    workflow = Flow("flaky").then(flaky_once).then(double).build()
    ids = [f"run-{n}" for n in range(30)]
    for run in ids:
        start_workflow(workflow, run, 1, real)
    worker = Worker(flaky, [workflow], concurrency=2, lease_seconds=1.0, max_recoveries=50)  # type: ignore[arg-type]
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: count_completed(real, ids) == len(ids), 60, "every run to complete")
        assert thread.is_alive()
        slots = [t for t in threading.enumerate() if t.name.startswith("conveyor-slot-")]
        assert len(slots) == 2
    finally:
        worker.stop()
        thread.join(timeout=10)
    assert flaky.failed > 10
    assert not thread.is_alive()
    real.close()
