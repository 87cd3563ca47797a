"""Versions: each run keeps the version and definition it was recorded by, across deploys (every backend)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from conveyor import Conveyor, Flow, RunState, task
from conveyor.backends.base import Backend
from conveyor.engine import worker as worker_module


def checkout(version: str, ran: list[str], *, extra_step: bool = False) -> Any:
    """reserve -> a short durable sleep -> wait for "go" -> ship (and, with extra_step, audit)."""

    @task
    def reserve(order: dict[str, Any]) -> dict[str, Any]:
        ran.append(f"reserve v{version}")
        return order

    @task
    def ship(go: Any) -> str:
        ran.append(f"ship v{version}")
        return f"shipped by v{version}"

    @task
    def audit(shipped: str) -> str:
        ran.append(f"audit v{version}")
        return shipped

    flow = (
        Flow("checkout", version=version)
        .then(reserve)
        .delay("cool_off", 0.2)
        .wait_for_signal("go", timeout="1h")
        .then(ship)
    )
    return (flow.then(audit) if extra_step else flow).build()


def drive_until(app: Conveyor, done: Any, seconds: float = 20.0) -> None:
    """Run a worker of ``app`` in a thread until ``done()`` holds (or ``seconds`` pass)."""
    worker = app.worker(concurrency=2, poll_interval_seconds=0.05)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + seconds
    try:
        while not done() and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        worker.stop()
        thread.join(10)


def test_runs_in_flight_on_v1_finish_on_v1_after_v2_is_deployed(backend: Backend) -> None:
    """Sleeping and signal-waiting v1 runs, then a new runtime with v1 and v2: they finish on v1's steps;
    new runs take v2. Each run keeps the version and definition hash it was recorded with."""
    ran: list[str] = []
    v1 = checkout("1", ran)
    old = Conveyor(backend, workflows=[v1])
    old.start("checkout", {}, workflow_id="sleeping")
    old.start("checkout", {}, workflow_id="waiting")
    drive_until(old, lambda: old.status("waiting").is_waiting() and old.status("sleeping").is_waiting())
    drive_until(old, lambda: old.status("waiting").step("go").state.value == "waiting")
    v2 = checkout("2", ran, extra_step=True)
    deployed = Conveyor(backend, workflows=[v1, v2])  # the new deploy keeps v1 registered
    deployed.start("checkout", {}, workflow_id="new")
    for workflow_id in ("sleeping", "waiting", "new"):
        deployed.send_signal(workflow_id, "go")
    drive_until(
        deployed, lambda: all(deployed.status(i).is_completed() for i in ("sleeping", "waiting", "new"))
    )
    for workflow_id in ("sleeping", "waiting"):
        status = deployed.status(workflow_id)
        assert status.output() == "shipped by v1"
        record = backend.load_run(workflow_id)
        assert record is not None
        assert (record.workflow_version, record.definition_hash) == ("1", v1.definition_hash)
    assert deployed.status("new").output() == "shipped by v2"
    assert backend.load_run("new").definition_hash == v2.definition_hash  # type: ignore[union-attr]
    assert "audit v1" not in ran


def test_a_sleeping_run_whose_definition_changed_under_its_version_fails_naming_the_change(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same name and version, another definition: the run is not handed back forever; it fails, and its
    status names the difference (the step added) and what to do."""
    monkeypatch.setattr(worker_module, "_UNKNOWN_VERSION_RETRY_SECONDS", 0.05)
    ran: list[str] = []
    old = Conveyor(backend, workflows=[checkout("1", ran)])
    old.start("checkout", {}, workflow_id="stranded")
    drive_until(old, lambda: old.status("stranded").is_waiting())
    changed = Conveyor(backend, workflows=[checkout("1", ran, extra_step=True)])
    drive_until(changed, lambda: not changed.status("stranded").is_running(), seconds=15)
    status = changed.status("stranded")
    assert status.state is RunState.FAILED, status.to_dict()
    error = status.error()
    assert error is not None
    assert error.error_type == "DefinitionChangedError"
    assert "adds ['audit']" in error.message
    assert "new version" in error.message
    assert error.step_name == "cool_off"  # where it stood
    assert ran == ["reserve v1"]  # nothing ran on the other definition
