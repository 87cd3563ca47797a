"""Cancel, pause and resume a run, and its deadline, in process, on every backend (the contract)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from conveyor import (
    Conveyor,
    FakeClock,
    Flow,
    InMemoryBackend,
    InvalidArgumentError,
    RetryPolicy,
    RunFinishedError,
    StepContext,
    cancel_workflow,
    task,
)
from conveyor.backends.base import Backend
from conveyor.core.states import RunState, StepState
from conveyor.engine.driver import FINISHED, DriveOutcome, Finished, RunDriver, WaitUntil


class Shop:
    """Records what the steps of the test workflow did and undid, and what each step is to do."""

    def __init__(self) -> None:
        self.done: list[str] = []
        self.undone: list[str] = []
        self.during_pack: Any = None


def order_flow(shop: Shop, name: str = "order") -> Any:
    """reserve (undo: release) -> charge (undo: refund) -> pack -> ship."""

    @task(compensate=lambda result: shop.undone.append("release"))
    def reserve(order: dict[str, Any]) -> str:
        shop.done.append("reserve")
        return "r1"

    @task(compensate=lambda result: shop.undone.append("refund"))
    def charge(reservation: str) -> str:
        shop.done.append("charge")
        return "c1"

    @task
    def pack(charge_id: str, context: StepContext) -> str:
        if shop.during_pack is not None:
            shop.during_pack(context)
        shop.done.append("pack")
        return "p1"

    @task
    def ship(parcel: str) -> str:
        shop.done.append("ship")
        return "s1"

    return Flow(name).then(reserve).then(charge).then(pack).then(ship).build()


def test_a_step_told_to_stop_is_not_swallowed_and_completed_steps_are_undone_newest_first(
    backend: Backend,
) -> None:
    """A step's ``except Exception`` does not swallow the cancel; the run compensates and ends cancelled."""
    shop = Shop()
    app = Conveyor(backend, workflows=[order_flow(shop)])

    def cancel_then_check(context: StepContext) -> None:
        app.cancel(context.workflow_id, "customer asked")
        assert context.cancelled
        try:
            context.raise_if_cancelled()
        except Exception:  # what user code writes: it must not catch the cancel
            pytest.fail("except Exception swallowed the cancel")

    shop.during_pack = cancel_then_check
    status = app.run("order", {}, workflow_id="o-1")
    assert status.state is RunState.CANCELLED
    assert status.is_cancelled()
    assert status.cancel_reason == "customer asked"
    error = status.error()
    assert error is not None
    assert error.message == "customer asked"
    assert error.step_name == "pack"
    assert shop.done == ["reserve", "charge"]
    assert shop.undone == ["refund", "release"]
    assert status.step("pack").state is StepState.PENDING
    assert status.step("ship").state is StepState.PENDING


def test_a_step_that_ignores_the_cancel_is_recorded_then_undone_and_no_later_step_starts(
    backend: Backend,
) -> None:
    """A step that finishes anyway is recorded; the driver sees the request before the next step."""
    shop = Shop()
    app = Conveyor(backend, workflows=[order_flow(shop)])
    shop.during_pack = lambda context: app.cancel(context.workflow_id, "too slow")
    status = app.run("order", {}, workflow_id="o-2")
    assert status.state is RunState.CANCELLED
    assert shop.done == ["reserve", "charge", "pack"]
    assert shop.undone == ["refund", "release"]


def test_cancelling_a_finished_run_is_a_clear_error_and_cancelling_twice_is_harmless(
    backend: Backend,
) -> None:
    """A completed run refuses a cancel with RunFinishedError; a cancelled one takes another quietly."""
    shop = Shop()
    app = Conveyor(backend, workflows=[order_flow(shop)])
    assert app.run("order", {}, workflow_id="done").is_completed()
    with pytest.raises(RunFinishedError, match="completed"):
        app.cancel("done", "late")
    shop.during_pack = lambda context: app.cancel(context.workflow_id, "first")
    assert app.run("order", {}, workflow_id="twice").is_cancelled()
    again = app.cancel("twice", "second")
    assert again.is_cancelled()
    assert again.cancel_reason == "first"
    with pytest.raises(RunFinishedError):
        app.pause("done")
    with pytest.raises(RunFinishedError):  # the module function, Sayiir's spelling, from another runtime
        cancel_workflow("done", "late", app.backend)


def test_a_paused_run_starts_no_new_step_and_resumes_where_it_stopped(backend: Backend) -> None:
    """Pausing in a step lets it finish and be recorded; after resume the run goes on from the next step."""
    shop = Shop()
    app = Conveyor(backend, workflows=[order_flow(shop)])
    shop.during_pack = lambda context: app.pause(context.workflow_id)
    status = app.run("order", {}, workflow_id="o-3")
    assert status.is_paused()
    assert status.state is RunState.RUNNING
    assert status.step("pack").state is StepState.COMPLETED
    assert shop.done == ["reserve", "charge", "pack"]
    assert app.backend.load_run("o-3").leased_until is None  # type: ignore[union-attr]  (holds nothing)
    again = app.run("order", {}, workflow_id="o-3")  # still paused: nothing runs
    assert again.is_paused()
    assert shop.done == ["reserve", "charge", "pack"]
    shop.during_pack = None
    assert not app.unpause("o-3").is_paused()
    done = app.run("order", {}, workflow_id="o-3")
    assert done.is_completed()
    assert shop.done == ["reserve", "charge", "pack", "ship"]


def test_cancelling_a_paused_run_compensates_it_at_once(backend: Backend) -> None:
    """A paused run nobody drives is cancelled and compensated by the cancel call itself."""
    shop = Shop()
    app = Conveyor(backend, workflows=[order_flow(shop)])
    shop.during_pack = lambda context: app.pause(context.workflow_id)
    app.run("order", {}, workflow_id="o-4")
    status = app.cancel("o-4", "changed my mind")
    assert status.is_cancelled()
    assert not status.is_paused()
    assert shop.undone == ["refund", "release"]


def test_a_run_past_its_deadline_is_cancelled_and_compensated() -> None:
    """A run waiting for a retry past its deadline is cancelled at the deadline, not after the retry."""
    clock = FakeClock()
    undone: list[str] = []
    attempts: list[float] = []

    @task(compensate=lambda result: undone.append("release"))
    def reserve(order: dict[str, Any]) -> str:
        return "r1"

    @task(retries=RetryPolicy(max_attempts=5, initial_delay_secs=60.0))
    def charge(reservation: str) -> str:
        attempts.append(clock.now())
        raise RuntimeError("gateway down")

    app = Conveyor(InMemoryBackend(), workflows=[Flow("d").then(reserve).then(charge).build()], clock=clock)
    started = clock.now()
    status = app.run("d", {}, workflow_id="late", deadline_seconds=90)
    assert status.is_cancelled()
    assert status.cancel_reason == "the run passed its deadline"
    assert undone == ["release"]
    assert len(attempts) == 2  # at 0 and 60; the third (at 180) is past the deadline
    stored = app.status("late").deadline_at
    assert stored is not None
    assert stored.timestamp() == pytest.approx(started + 90)
    assert clock.now() - started == pytest.approx(90)


def turn(app: Conveyor, workflow: Any) -> DriveOutcome | None:
    """Claim one ready run and drive it as a worker does, handing it back after; None if none was ready."""
    backend = app.backend
    claimed = backend.claim_runs(owner="w", limit=1, lease_seconds=60, max_recoveries=5)
    if not claimed:
        return None
    run = claimed[0]
    outcome = RunDriver(workflow, run, backend, app.clock).drive()
    if not isinstance(outcome, Finished):
        at = outcome.at if isinstance(outcome, WaitUntil) else None
        backend.release_run(workflow_id=run.workflow_id, epoch=run.epoch, wake_at=at)
    return outcome


def test_a_sleeping_run_is_cancelled_and_compensated_at_once(backend: Backend) -> None:
    """A run in a durable sleep, held by nobody, is compensated by the cancel call, not after the sleep."""
    undone: list[str] = []

    @task(compensate=lambda result: undone.append("release"))
    def reserve(order: dict[str, Any]) -> str:
        return "r1"

    @task
    def ship(order: dict[str, Any]) -> str:
        return "shipped"

    flow = Flow("sleepy").then(reserve).delay("nap", "1h").then(ship).build()
    app = Conveyor(backend, workflows=[flow])
    app.start("sleepy", {}, workflow_id="z-1")
    assert isinstance(turn(app, flow), WaitUntil)  # asleep, held by nobody
    assert app.status("z-1").step("reserve").state is StepState.COMPLETED
    status = app.cancel("z-1", "no longer needed")
    assert status.is_cancelled()
    assert undone == ["release"]
    assert status.step("ship").state is StepState.PENDING


def test_a_cancel_without_waiting_leaves_the_undos_to_a_worker(backend: Backend) -> None:
    """``wait=False`` (a web request's cancel): nothing is undone in the call; the run is claimable at once
    and a worker compensates it."""
    undone: list[str] = []

    @task(compensate=lambda result: undone.append("release"))
    def reserve(order: dict[str, Any]) -> str:
        return "r1"

    @task
    def ship(order: dict[str, Any]) -> str:
        return "shipped"

    flow = Flow("sleepy").then(reserve).delay("nap", "1h").then(ship).build()
    app = Conveyor(backend, workflows=[flow])
    app.start("sleepy", {}, workflow_id="z-1")
    assert isinstance(turn(app, flow), WaitUntil)
    status = app.cancel("z-1", "no longer needed", by="ops", wait=False)
    assert status.is_running()
    assert undone == []
    assert status.cancelled_by == "ops"
    app.worker(concurrency=1, poll_interval_seconds=0.05).run(until_idle=True)
    assert app.status("z-1").is_cancelled()
    assert undone == ["release"]
    assert app.status("z-1").cancel_reason == "no longer needed"


def test_pausing_a_sleeping_run_keeps_it_unclaimed_until_resumed(backend: Backend) -> None:
    """A paused run is not claimed by a worker even once its sleep is over; resumed, it completes."""

    @task
    def ship(order: dict[str, Any]) -> str:
        return "shipped"

    # The nap is long enough to be still ahead at the first turn on a loaded machine (0.01 s was not).
    flow = Flow("short-nap").delay("nap", 0.4).then(ship).build()
    app = Conveyor(backend, workflows=[flow])
    app.start("short-nap", {}, workflow_id="z-2")
    assert isinstance(turn(app, flow), WaitUntil)
    app.pause("z-2")
    time.sleep(0.5)  # past the sleep: only the pause keeps it from being claimed
    assert turn(app, flow) is None
    assert app.status("z-2").is_paused()
    assert app.status("z-2").step("ship").state is StepState.PENDING
    app.unpause("z-2")
    assert turn(app, flow) is FINISHED
    assert app.status("z-2").is_completed()


@pytest.mark.parametrize(
    ("reason", "message"),
    [
        ("out of stock\x00", "reason must be printable text"),
        ("\ud800", "reason must be printable text"),
        (42, "reason must be text, not int"),
        ("x" * 2001, "reason is 2001 characters long; the limit is 2000"),
    ],
)
def test_a_cancel_reason_that_cannot_be_stored_is_refused_before_anything_is_written(
    backend: Backend, reason: Any, message: str
) -> None:
    """A NUL, a lone surrogate, a non-text or an endless reason: a clear error, and the run is untouched."""
    shop = Shop()
    app = Conveyor(backend, workflows=[order_flow(shop)])
    shop.during_pack = lambda context: None
    app.start("order", {}, workflow_id="kept")
    with pytest.raises(InvalidArgumentError, match=message):
        app.cancel("kept", reason)
    assert app.status("kept").cancel_reason is None


def test_a_workflow_id_holding_a_lone_surrogate_is_refused_at_the_door(backend: Backend) -> None:
    """No backend can store a lone surrogate (it is not UTF-8): refused by name, nothing written."""
    app = Conveyor(backend, workflows=[order_flow(Shop())])
    with pytest.raises(InvalidArgumentError, match="workflow_id must not contain lone surrogates"):
        app.start("order", {}, workflow_id="order-\udc80")
    assert len(app.runs()) == 0


def test_a_cancel_reaches_a_step_its_own_workers_drive_at_once(backend: Backend) -> None:
    """A worker made by the runtime, in this process: its running step is told now, not a heartbeat later."""
    shop = Shop()
    app = Conveyor(backend, workflows=[order_flow(shop)])
    packing = threading.Event()
    told_after: list[float] = []

    def wait_to_be_told(context: StepContext) -> None:
        packing.set()
        began = time.monotonic()
        while not context.cancelled and time.monotonic() - began < 10:
            time.sleep(0.005)
        told_after.append(time.monotonic() - began)

    shop.during_pack = wait_to_be_told
    worker = app.worker(concurrency=1, lease_seconds=30)  # a heartbeat round would take 10 s
    app.start("order", {}, workflow_id="busy")  # before the worker: until idle, it could leave at once
    thread = threading.Thread(target=worker.run, kwargs={"until_idle": True})
    thread.start()
    assert packing.wait(10)
    app.cancel("busy", "customer asked")
    thread.join(20)
    assert len(told_after) == 1
    assert told_after[0] < 2.0
    assert app.status("busy").is_cancelled()
    assert shop.undone == ["refund", "release"]
