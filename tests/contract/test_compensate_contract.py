"""Undoing a completed run (``compensate``): on every backend, in process and through a worker."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor import (
    Conveyor,
    Flow,
    RunFinishedError,
    RunNotFoundError,
    StepContext,
    compensate_workflow,
    task,
)
from conveyor.backends.base import Backend
from conveyor.core.states import RunState, StepState


def booking(undone: list[str]) -> Any:
    """reserve (undo: release) -> charge (undo: refund, which notes the reason it was told) -> confirm."""

    @task(compensate=lambda result: undone.append("release"))
    def reserve(order: dict[str, Any]) -> str:
        return "r1"

    def refund(result: str, context: StepContext) -> None:
        undone.append(f"refund ({context.cancel_reason})")

    @task(compensate=refund)
    def charge(reservation: str) -> str:
        return "c1"

    @task
    def confirm(charge_id: str) -> str:
        return "confirmed"

    return Flow("booking").then(reserve).then(charge).then(confirm).build()


def test_a_completed_run_is_undone_newest_first_and_ends_cancelled_with_its_reason(backend: Backend) -> None:
    """compensate() on a completed run runs its undos, newest first, each told why; it ends cancelled."""
    undone: list[str] = []
    app = Conveyor(backend, workflows=[booking(undone)])
    assert app.run("booking", {}, workflow_id="b-1").is_completed()
    status = app.compensate("b-1", "returned by the customer")
    assert status.state is RunState.CANCELLED
    assert status.cancel_reason == "returned by the customer"
    assert status.error() is not None
    assert status.error().message == "returned by the customer"
    assert undone == ["refund (returned by the customer)", "release"]
    assert [step.state for step in status.steps] == [
        StepState.COMPENSATED,
        StepState.COMPENSATED,
        StepState.COMPLETED,  # confirm has no undo
    ]


def test_undoing_twice_is_harmless_and_a_failed_run_refuses(backend: Backend) -> None:
    """A second compensate of an undone run changes nothing; a run that failed has nothing left to undo."""
    undone: list[str] = []
    app = Conveyor(backend, workflows=[booking(undone)])
    app.run("booking", {}, workflow_id="b-2")
    app.compensate("b-2", "first")
    again = compensate_workflow("b-2", "second", app.backend)  # the module function, another runtime
    assert again.is_cancelled()
    assert again.cancel_reason == "first"
    assert undone == ["refund (first)", "release"]

    @task
    def broken(order: dict[str, Any]) -> str:
        raise ValueError("no")

    app.register(Flow("broken").then(broken).build())
    assert app.run("broken", {}, workflow_id="f-1").is_failed()
    with pytest.raises(RunFinishedError, match="failed"):
        app.compensate("f-1", "late")
    with pytest.raises(RunNotFoundError):
        app.compensate("nobody", "late")


def test_a_completed_run_is_undone_by_a_worker_when_the_caller_does_not_know_its_workflow(
    backend: Backend,
) -> None:
    """A runtime without the workflow records the request; a worker that has it runs the undos."""
    undone: list[str] = []
    flow = booking(undone)
    app = Conveyor(backend, workflows=[flow])
    app.run("booking", {}, workflow_id="b-3")
    stranger = Conveyor(backend)
    requested = stranger.compensate("b-3", "fraud")
    assert requested.state is RunState.COMPENSATING
    assert undone == []
    app.worker(concurrency=1).run(until_idle=True)
    assert app.status("b-3").is_cancelled()
    assert undone == ["refund (fraud)", "release"]
