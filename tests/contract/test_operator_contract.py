"""Operator actions, on every backend: resume a stranded run, retry from a named step, skip a failed step,
complete a run by hand; each logged on the run with who did it and why."""

from __future__ import annotations

import time
from typing import Any

import pytest

from conveyor import (
    Conveyor,
    Flow,
    InvalidArgumentError,
    NonRetryableError,
    RunAlreadyRunningError,
    RunFinishedError,
    RunNotFoundError,
    RunNotRetryableError,
    cancel_workflow,
    complete_workflow,
    pause_workflow,
    resume_workflow,
    retry_workflow,
    skip_workflow_step,
    task,
)
from conveyor.backends.base import Backend
from conveyor.core.states import RunState, StepState
from conveyor.engine.api import new_run
from conveyor.engine.driver import RunDriver, WaitUntil
from conveyor.runtime.operator import os_user

DEAD_OWNER = "gone-machine#1:4242:dead/1"
"""An owner on another machine: never provably dead, so only its lease's end frees its runs."""


class Shop:
    """What the test workflow's steps did, and what charge is to do."""

    def __init__(self) -> None:
        self.done: list[str] = []
        self.undone: list[str] = []
        self.charge_fails = False


def order_flow(shop: Shop, name: str = "order") -> Any:
    """reserve (undo: release) -> charge -> pack -> ship; charge fails for good while ``charge_fails``."""

    @task(compensate=lambda result: shop.undone.append("release"))
    def reserve(order: dict[str, Any]) -> str:
        shop.done.append("reserve")
        return "r1"

    @task
    def charge(reservation: str) -> str:
        shop.done.append("charge")
        if shop.charge_fails:
            raise NonRetryableError("card declined")
        return "c1"

    @task
    def pack(charge_id: str) -> str:
        shop.done.append(f"pack:{charge_id}")
        return "p1"

    @task
    def ship(parcel: str) -> str:
        shop.done.append("ship")
        return "s1"

    return Flow(name).then(reserve).then(charge).then(pack).then(ship).build()


def fork_flow(shop: Shop) -> Any:
    """prepare, then fork (label, invoice), then post, which joins both."""

    @task
    def prepare(order: dict[str, Any]) -> int:
        shop.done.append("prepare")
        return 1

    @task
    def label(value: int) -> str:
        shop.done.append("label")
        return "L"

    @task
    def invoice(value: int) -> str:
        shop.done.append("invoice")
        return "I"

    @task
    def post(results: dict[str, Any]) -> str:
        shop.done.append("post")
        return f"{results['label']}{results['invoice']}"

    return Flow("forked").then(prepare).fork().branch(label).branch(invoice).join(post).build()


def stranded(app: Conveyor, workflow: Any, workflow_id: str, *, lease_seconds: float) -> None:
    """Record a run as a process does that takes it and then dies: running, held by an owner that is gone."""
    app.backend.start_run(
        new_run(workflow, workflow_id, {}, None),
        owner=DEAD_OWNER,
        now=app.clock.now(),
        lease_seconds=lease_seconds,
    )


# -- resume ---------------------------------------------------------------------------------------------


def test_resume_drives_a_stranded_run_to_its_end_here_and_logs_who_and_why(backend: Backend) -> None:
    """A run left running by a process that died (its lease over) is driven to its end by resume."""
    shop = Shop()
    workflow = order_flow(shop)
    app = Conveyor(backend, workflows=[workflow])
    stranded(app, workflow, "o-1", lease_seconds=0.05)
    time.sleep(0.1)
    status = app.resume("o-1", by="alice", reason="its process was killed")
    assert status.is_completed()
    assert shop.done == ["reserve", "charge", "pack:c1", "ship"]
    [action] = status.operator_actions
    assert (action.action, action.by, action.reason, action.step) == (
        "resume",
        "alice",
        "its process was killed",
        None,
    )
    assert app.status("o-1").operator_actions == status.operator_actions


def test_resume_refuses_a_run_a_live_owner_drives_and_a_finished_or_unknown_run(backend: Backend) -> None:
    """A run under a live lease is not taken; a finished or unknown run is a clear error."""
    shop = Shop()
    workflow = order_flow(shop)
    app = Conveyor(backend, workflows=[workflow])
    stranded(app, workflow, "held", lease_seconds=60)
    with pytest.raises(RunAlreadyRunningError, match=r"being driven by gone-machine#1:4242:dead/1"):
        app.resume("held")
    assert app.status("held").operator_actions == ()
    assert app.run(workflow, {}, workflow_id="done").is_completed()
    with pytest.raises(RunFinishedError, match=r"already ended \(completed\); there is nothing to resume"):
        app.resume("done")
    with pytest.raises(RunNotFoundError):
        app.resume("nobody")
    assert shop.done.count("reserve") == 1


def test_resume_of_a_paused_run_unpauses_it_and_drives_it_here(backend: Backend) -> None:
    """A paused run that nobody drives is unpaused and driven to its end by resume."""
    shop = Shop()
    workflow = order_flow(shop)
    app = Conveyor(backend, workflows=[workflow])
    app.start(workflow, {}, workflow_id="p-1")
    app.pause("p-1", by="bob", reason="looking")
    status = app.resume("p-1", by="bob")
    assert status.is_completed()
    assert not status.is_paused()
    assert [(done.action, done.by) for done in status.operator_actions] == [
        ("pause", "bob"),
        ("resume", "bob"),
    ]
    assert status.paused_by == "bob"


def test_resume_workflow_takes_sayiirs_arguments_and_needs_a_known_workflow(backend: Backend) -> None:
    """Sayiir's ``resume_workflow(workflow, workflow_id, backend)``; by id alone, the workflow is needed."""
    shop = Shop()
    workflow = order_flow(shop)
    app = Conveyor(backend, workflows=[workflow])
    stranded(app, workflow, "s-1", lease_seconds=0.05)
    time.sleep(0.1)
    with pytest.raises(Exception, match="must know workflow 'order' v1"):
        resume_workflow("s-1", backend=backend)
    status = resume_workflow(workflow, "s-1", backend)
    assert status.is_completed()
    assert status.operator_actions[0].by == os_user()


# -- retry from a named step --------------------------------------------------------------------------------


def test_retry_from_a_step_of_a_completed_run_runs_it_and_what_follows_again(backend: Backend) -> None:
    """The named step and every step after it run again (fresh keys); the steps before it are kept."""
    shop = Shop()
    app = Conveyor(backend, workflows=[order_flow(shop)])
    first = app.run("order", {}, workflow_id="o-2")
    assert first.is_completed()
    shop.done.clear()
    status = app.retry("o-2", from_step="pack", by="carol", reason="parcel lost")
    assert status.is_completed()
    assert shop.done == ["pack:c1", "ship"]
    assert status.step("reserve").attempts == 1
    assert status.step("pack").attempts == 1
    [action] = status.operator_actions
    assert (action.action, action.by, action.reason, action.step) == ("retry", "carol", "parcel lost", "pack")


def test_retry_from_a_step_runs_only_the_steps_that_depend_on_it(backend: Backend) -> None:
    """In a fork, retrying from one branch runs that branch and the join again, not the other branch."""
    shop = Shop()
    app = Conveyor(backend, workflows=[fork_flow(shop)])
    assert app.run("forked", {}, workflow_id="f-1").output() == "LI"
    shop.done.clear()
    status = app.retry("f-1", from_step="label")
    assert status.output() == "LI"
    assert sorted(shop.done) == ["label", "post"]


def test_retry_from_a_step_of_a_failed_run_and_its_refusals(backend: Backend) -> None:
    """A failed run retried from an earlier step runs it again; a running run, an unknown step are refused."""
    shop = Shop()
    workflow = order_flow(shop)
    app = Conveyor(backend, workflows=[workflow])
    shop.charge_fails = True
    failed = app.run("order", {}, workflow_id="o-3")
    assert failed.state is RunState.COMPENSATED
    assert shop.undone == ["release"]
    with pytest.raises(
        InvalidArgumentError, match=r"from_step must name a step of workflow 'order'.*'weigh'"
    ):
        app.retry("o-3", from_step="weigh")
    shop.charge_fails = False
    shop.done.clear()
    status = retry_workflow(workflow, "o-3", backend, from_step="reserve", by="dave")
    assert status.is_completed()
    assert shop.done == ["reserve", "charge", "pack:c1", "ship"]
    with pytest.raises(RunNotRetryableError, match="is completed; only a failed"):
        app.retry("o-3")
    stranded(app, workflow, "running", lease_seconds=60)
    with pytest.raises(RunNotRetryableError, match="is running"):
        app.retry("running", from_step="pack")


# -- skip a failed step -------------------------------------------------------------------------------------


def test_skipping_a_failed_step_records_it_completed_with_the_result_and_the_run_goes_on(
    backend: Backend,
) -> None:
    """The skipped step is completed with the given result, later steps get it, and the run completes."""
    shop = Shop()
    app = Conveyor(backend, workflows=[order_flow(shop)])
    shop.charge_fails = True
    assert app.run("order", {}, workflow_id="o-4").state is RunState.COMPENSATED
    shop.done.clear()
    status = app.skip_step("o-4", "charge", "paid-by-phone", by="erin", reason="charged by hand")
    assert status.is_completed()
    assert shop.done == ["reserve", "pack:paid-by-phone", "ship"]  # reserve was undone: it runs again
    charge = status.step("charge")
    assert (charge.state, charge.result) == (StepState.COMPLETED, "paid-by-phone")
    [action] = status.operator_actions
    assert (action.action, action.by, action.reason, action.step) == (
        "skip",
        "erin",
        "charged by hand",
        "charge",
    )


def test_skipping_the_last_missing_step_completes_the_run_at_once(backend: Backend) -> None:
    """A run whose only failed step is skipped (nothing else to run) is completed without a drive."""

    @task
    def only(order: dict[str, Any]) -> int:
        raise NonRetryableError("down")

    workflow = Flow("single").then(only).build()
    app = Conveyor(backend, workflows=[workflow])
    assert app.run(workflow, {}, workflow_id="one").state is RunState.FAILED
    status = skip_workflow_step(workflow, "one", "only", 7, backend, by="frank")
    assert status.is_completed()
    assert status.output() == 7


def test_skip_refuses_a_step_that_did_not_fail_a_result_of_the_wrong_type_and_a_running_run(
    backend: Backend,
) -> None:
    """Only a failed step of a run that ended without completing can be skipped, with a fitting result."""
    shop = Shop()
    workflow = order_flow(shop)
    app = Conveyor(backend, workflows=[workflow])
    shop.charge_fails = True
    app.run("order", {}, workflow_id="o-5")
    with pytest.raises(InvalidArgumentError, match="step 'reserve' of run 'o-5' is compensated"):
        app.skip_step("o-5", "reserve", "r1")
    with pytest.raises(InvalidArgumentError, match="not what the step returns"):
        app.skip_step("o-5", "charge", {"not": "text"})
    with pytest.raises(InvalidArgumentError, match="step must name a step"):
        app.skip_step("o-5", "nope", "x")
    stranded(app, workflow, "running", lease_seconds=60)
    with pytest.raises(RunNotRetryableError, match="is running"):
        app.skip_step("running", "charge", "c1")
    assert app.status("o-5").operator_actions == ()


# -- complete by hand ---------------------------------------------------------------------------------------


def test_a_failed_run_completed_by_hand_ends_completed_with_the_output_given(backend: Backend) -> None:
    """The run ends completed with the given output; its steps stay as recorded; the action is logged."""
    shop = Shop()
    app = Conveyor(backend, workflows=[order_flow(shop)])
    shop.charge_fails = True
    app.run("order", {}, workflow_id="o-6")
    status = app.complete_by_hand("o-6", {"shipped": "by courier"}, by="gina", reason="sent by hand")
    assert status.is_completed()
    assert status.output() == {"shipped": "by courier"}
    assert status.error() is None
    assert status.step("charge").state is StepState.FAILED
    [action] = status.operator_actions
    assert (action.action, action.by, action.reason) == ("complete", "gina", "sent by hand")
    with pytest.raises(RunFinishedError, match="already completed"):
        app.complete_by_hand("o-6")
    with pytest.raises(RunNotFoundError):
        complete_workflow("nobody", None, backend)


def test_a_waiting_run_nobody_drives_can_be_completed_by_hand_but_not_one_a_live_owner_drives(
    backend: Backend,
) -> None:
    """A run waiting for a signal (released) is completed by hand; one under a live lease is refused."""

    @task
    def ask(order: dict[str, Any]) -> str:
        return "asked"

    workflow = Flow("approval").then(ask).wait_for_signal("approved", timeout=3600).build()
    app = Conveyor(backend, workflows=[workflow])
    record, _ = backend.start_run(
        new_run(workflow, "w-1", {}, None), owner=app.owner, now=app.clock.now(), lease_seconds=30
    )
    waiting = RunDriver(workflow, record, backend, app.clock).drive()  # as a worker drives it, then lets go
    assert isinstance(waiting, WaitUntil)
    backend.release_run(
        workflow_id="w-1", epoch=record.epoch, wake_at=waiting.at, wake_for_signals=waiting.signals
    )
    assert app.status("w-1").is_waiting()
    status = complete_workflow("w-1", "approved by phone", backend, by="hal")
    assert status.is_completed()
    assert not status.is_waiting()
    assert status.output() == "approved by phone"
    stranded(app, workflow, "held", lease_seconds=60)
    with pytest.raises(RunAlreadyRunningError, match="pause or cancel it"):
        app.complete_by_hand("held", "x")


# -- who and why --------------------------------------------------------------------------------------------


def test_cancel_and_pause_are_logged_with_who_asked_in_sayiirs_spellings_too(backend: Backend) -> None:
    """``cancelled_by`` and ``paused_by`` are logged; the status shows them; the log is in the status dict."""
    shop = Shop()
    workflow = order_flow(shop)
    app = Conveyor(backend, workflows=[workflow])
    app.start(workflow, {}, workflow_id="c-1")
    pause_workflow("c-1", backend, reason="check stock", paused_by="ivy")
    app.unpause("c-1", by="ivy")
    cancel_workflow("c-1", backend, reason="customer asked", cancelled_by="jack")
    status = app.status("c-1")  # asked to cancel (a runtime that knows the workflow compensates it)
    assert status.cancel_reason == "customer asked"
    assert status.cancelled_by == "jack"
    assert status.paused_by == "ivy"
    logged = status.to_dict()["operator_actions"]
    assert [(entry["action"], entry["by"], entry["reason"]) for entry in logged] == [
        ("pause", "ivy", "check stock"),
        ("unpause", "ivy", ""),
        ("cancel", "jack", "customer asked"),
    ]
    assert cancel_workflow("c-1", "again", backend).cancel_reason == "customer asked"  # conveyor's order


def test_who_defaults_to_the_os_user_and_a_bad_name_or_reason_is_a_clear_error(backend: Backend) -> None:
    """``by`` left out is the OS user; a blank or unprintable ``by`` and a bad reason are refused."""
    shop = Shop()
    app = Conveyor(backend, workflows=[order_flow(shop)])
    app.start("order", {}, workflow_id="b-1")
    assert app.pause("b-1").paused_by == os_user()
    with pytest.raises(InvalidArgumentError, match="by"):
        app.complete_by_hand("b-1", by=" ")
    with pytest.raises(InvalidArgumentError, match="by must be printable"):
        app.complete_by_hand("b-1", by="eve\x00")
    with pytest.raises(InvalidArgumentError, match="reason"):
        app.complete_by_hand("b-1", reason="\x01")
    assert len(app.status("b-1").operator_actions) == 1


def test_retry_without_waiting_reopens_the_run_for_a_worker_and_runs_nothing_here(backend: Backend) -> None:
    """``wait=False`` (a web request's retry): the compensated run is reopened, logged and left claimable;
    nothing runs in the caller; a worker then drives it to its end (its undone step runs again)."""
    shop = Shop()
    shop.charge_fails = True
    app = Conveyor(backend, workflows=[order_flow(shop)])
    assert app.run("order", {}, workflow_id="o-w").state is RunState.COMPENSATED
    shop.charge_fails = False
    shop.done.clear()
    status = app.retry("o-w", by="dana", reason="card replaced", wait=False)
    assert status.state is RunState.RUNNING
    assert shop.done == []
    assert [action.action for action in status.operator_actions] == ["retry"]
    app.worker(lease_seconds=5, poll_interval_seconds=0.05).run(until_idle=True)
    finished = app.status("o-w")
    assert finished.is_completed()
    assert shop.done == ["reserve", "charge", "pack:c1", "ship"]


def test_skipping_a_step_without_waiting_leaves_the_rest_to_a_worker(backend: Backend) -> None:
    """``skip_step(..., wait=False)`` completes the failed step and returns; a worker runs what follows."""
    shop = Shop()
    shop.charge_fails = True
    app = Conveyor(backend, workflows=[order_flow(shop)])
    app.run("order", {}, workflow_id="o-s")
    shop.done.clear()
    status = app.skip_step("o-s", "charge", "c9", wait=False)
    assert status.state is RunState.RUNNING
    assert shop.done == []
    app.worker(lease_seconds=5, poll_interval_seconds=0.05).run(until_idle=True)
    assert app.status("o-s").is_completed()
    assert shop.done == ["reserve", "pack:c9", "ship"]  # reserve was undone when the run compensated
