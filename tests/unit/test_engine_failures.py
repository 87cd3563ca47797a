"""A failure of the engine's own while it settles a step's outcome ends the run with a named error: the step
fails for good (then the completed steps are undone as usual), in process as in a worker; never a run left
running, never a loop."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from conveyor import (
    FakeClock,
    Flow,
    InMemoryBackend,
    RetryPolicy,
    RunState,
    StepState,
    get_workflow_status,
    run_durable_workflow,
    start_workflow,
    task,
)
from conveyor.core.settle import StepFailed
from conveyor.engine import driver
from conveyor.engine.worker import Worker


class BrokenBackoff(RetryPolicy):
    """A retry policy whose delay cannot be computed (as an exponential backoff overflowing a float)."""

    def delay_after(self, attempts_made: int, random_unit: float = 0.5) -> float:
        raise OverflowError("(34, 'Numerical result out of range')")


class Unprintable(Exception):
    """An exception that cannot be described: its __str__ raises."""

    def __str__(self) -> str:
        raise RuntimeError("no message")


def checkout(charge_body: Any, **charge_options: Any) -> Any:
    """reserve (undone by appending to ``undone``) then charge."""
    undone: list[str] = []

    @task(compensate=lambda reservation: undone.append(reservation))
    def reserve(order: dict[str, Any]) -> str:
        return "res-1"

    charge = task(name="charge", **charge_options)(charge_body)
    workflow = Flow("checkout").then(reserve).then(charge).build()
    return workflow, undone


def declined(reservation: str) -> str:
    raise ConnectionError("gateway unreachable")


def test_a_retry_policy_that_raises_fails_the_step_for_good_and_undoes_the_rest() -> None:
    """delay_after raising: the step fails for good with EngineError naming both errors; reserve is undone."""
    workflow, undone = checkout(declined, retries=BrokenBackoff(max_retries=3))
    status = run_durable_workflow(workflow, "w", {}, InMemoryBackend(), clock=FakeClock())
    assert status.state is RunState.COMPENSATED
    assert undone == ["res-1"]
    error = status.error()
    assert error.step_name == "charge"
    assert error.error_type == "EngineError"
    assert error.retryable is False
    assert error.attempts == 1
    assert "OverflowError" in error.message
    assert "gateway unreachable" in error.message
    assert status.step("charge").state is StepState.FAILED


def test_an_undo_retry_policy_that_raises_ends_the_run_compensation_failed() -> None:
    """The undo's delay_after raising: that undo fails for good with EngineError, for a person to look."""

    @task(
        compensate=lambda reservation: (_ for _ in ()).throw(ConnectionError("stock service down")),
        compensation_retries=BrokenBackoff(max_retries=3),
    )
    def reserve(order: dict[str, Any]) -> str:
        return "res-1"

    @task
    def charge(reservation: str) -> str:
        raise ValueError("card declined")

    workflow = Flow("checkout").then(reserve).then(charge).build()
    status = run_durable_workflow(workflow, "w", {}, InMemoryBackend(), clock=FakeClock())
    assert status.state is RunState.COMPENSATION_FAILED
    record = status.step("reserve")
    assert record.state is StepState.COMPENSATION_FAILED
    assert record.compensation_attempts == 1
    assert record.compensation_error is not None
    assert record.compensation_error.error_type == "EngineError"
    assert "OverflowError" in record.compensation_error.message


def test_an_exception_that_cannot_be_described_fails_its_step_for_good() -> None:
    """A step raising an exception whose str() raises: the step fails for good with EngineError."""

    def unprintable(reservation: str) -> str:
        raise Unprintable

    workflow, undone = checkout(unprintable, retries=RetryPolicy(max_retries=3))
    status = run_durable_workflow(workflow, "w", {}, InMemoryBackend(), clock=FakeClock())
    assert status.state is RunState.COMPENSATED
    assert undone == ["res-1"]
    assert status.error().error_type == "EngineError"
    assert "Unprintable" in status.error().message


def test_an_encoding_failure_inside_the_engine_fails_the_step_for_good(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The codec raising something other than EncodingError (a bug) fails the step, naming the error."""
    real_encode = driver.encode

    def broken_encode(value: Any, *, what: str = "value", **options: Any) -> str:
        if what == "result of step 'charge'":
            raise RuntimeError("codec bug")
        return real_encode(value, what=what, **options)

    monkeypatch.setattr(driver, "encode", broken_encode)
    workflow, undone = checkout(lambda reservation: "paid", retries=RetryPolicy(max_retries=3))
    status = run_durable_workflow(workflow, "w", {}, InMemoryBackend(), clock=FakeClock())
    assert status.state is RunState.COMPENSATED
    assert undone == ["res-1"]
    error = status.error()
    assert (error.error_type, error.attempts, error.retryable) == ("EngineError", 1, False)
    assert "RuntimeError: codec bug" in error.message


def test_a_run_whose_failure_cannot_be_recorded_at_all_is_dead_lettered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """If even failing the step for good raises (a bug), the run is dead-lettered with the engine's error."""
    real_settle = driver.settle

    def broken(workflow: Any, run: Any, spec: Any, outcome: Any, in_flight: Any = frozenset()) -> Any:
        if isinstance(outcome, StepFailed):
            raise AssertionError("settling is broken")
        return real_settle(workflow, run, spec, outcome, in_flight)

    monkeypatch.setattr(driver, "settle", broken)
    workflow, _ = checkout(declined)
    status = run_durable_workflow(workflow, "w", {}, InMemoryBackend(), clock=FakeClock())
    assert status.state is RunState.DEAD_LETTERED
    assert status.error().error_type == "EngineError"
    assert status.error().step_name == "charge"
    assert "settling is broken" in status.error().message


def test_in_a_worker_a_retry_policy_that_raises_ends_the_run_without_looping() -> None:
    """A worker drives the same run to its end once: no error, no hand-back, the run compensated."""
    backend = InMemoryBackend()
    workflow, undone = checkout(declined, retries=BrokenBackoff(max_retries=3))
    start_workflow(workflow, "w", {}, backend)
    worker = Worker(backend, [workflow], concurrency=1)
    thread = threading.Thread(target=worker.run, kwargs={"until_idle": True}, daemon=True)
    thread.start()
    thread.join(timeout=10)
    if thread.is_alive():
        worker.stop()
        thread.join(timeout=10)
    status = get_workflow_status("w", backend, workflow)
    assert status.state is RunState.COMPENSATED
    assert status.error().error_type == "EngineError"
    assert undone == ["res-1"]
    assert (worker.stats.claimed, worker.stats.errors, worker.stats.finished) == (1, 0, 1)
