"""Seed 002's runtime hooks, on every backend: step settings adjusted from a run's input (express orders),
and annotations a run's steps record as they go, committed with their step's result."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from conveyor import (
    Conveyor,
    DefinitionError,
    Flow,
    NonRetryableError,
    RetryPolicy,
    RunNotFoundError,
    Saga,
    StepContext,
    StepTimeoutError,
    step,
    task,
)
from conveyor.backends.base import Backend
from conveyor.core.states import RunState
from conveyor.definition.settings import workflow_for_run

NO_WAIT = RetryPolicy(max_retries=0, initial_delay_secs=0)


def express(order: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Seed 002's establish_step_dependencies_and_defaults: express orders get a 15 s payment timeout and
    one retry."""
    return {"charge": {"timeout": 15, "retries": 1}} if order.get("priority") == "express" else {}


def checkout_flow(declines: list[bool], hook: Any = express) -> Any:
    """validate -> charge (declines while ``declines`` holds True, one per attempt) -> confirm."""

    @task
    def validate(order: dict[str, Any]) -> dict[str, Any]:
        return order

    @task(retries=NO_WAIT)
    def charge(order: dict[str, Any], context: StepContext) -> str:
        context.annotate("charge_attempted", {"attempt": context.attempt})
        if declines and declines.pop(0):
            raise ConnectionError("gateway timeout")
        context.annotate("payment_processed", {"payment_id": "pi_1", "ms": 120})
        return "pi_1"

    @task
    def confirm(payment_id: str, context: StepContext) -> str:
        context.annotate("checkout_completed", {"steps_completed": 3})
        return f"confirmed {payment_id}"

    return Flow("checkout", step_settings=hook).then(validate).then(charge).then(confirm).build()


# -- step settings --------------------------------------------------------------------------------------


def test_an_express_order_gets_the_payment_timeout_and_retry_its_hook_gives(backend: Backend) -> None:
    """The hook's settings apply to express runs only: one retry saves the express order, not the other."""
    workflow = checkout_flow([True, False, True, False])
    assert workflow_for_run(workflow, '{"priority": "express"}').step("charge").timeout_seconds == 15
    assert workflow_for_run(workflow, '{"priority": "standard"}') is workflow
    app = Conveyor(backend, workflows=[workflow])
    fast = app.run(workflow, {"priority": "express"}, workflow_id="express-1")
    assert fast.is_completed()
    assert fast.step("charge").attempts == 2
    slow = app.run(workflow, {"priority": "standard"}, workflow_id="standard-1")
    assert slow.state is RunState.FAILED
    assert slow.step("charge").attempts == 1


def test_the_hooks_timeout_is_the_steps_timeout_in_every_drive(backend: Backend) -> None:
    """A timeout from the hook fails a slow attempt (the step runs off the driving thread to be timed)."""
    import time

    @task
    def slow(order: dict[str, Any]) -> str:
        time.sleep(0.3)
        return "late"

    workflow = Flow("timed", step_settings=lambda order: {"slow": {"timeout": 0.05}}).then(slow).build()
    status = Conveyor(backend, workflows=[workflow]).run(workflow, {}, workflow_id="t-1")
    assert status.state is RunState.FAILED
    error = status.error()
    assert error is not None
    assert error.error_type == StepTimeoutError.__name__


class ExpressCheckout(Saga):
    """A workflow class whose ``step_settings`` method adjusts its payment step."""

    declines: ClassVar[list[bool]] = []

    @step
    def validate(self, priority: str) -> str:
        return priority

    @step(retries=NO_WAIT)
    def charge(self, priority: str) -> str:
        if ExpressCheckout.declines and ExpressCheckout.declines.pop(0):
            raise ConnectionError("gateway timeout")
        return "pi_9"

    def step_settings(self, order: dict[str, Any]) -> dict[str, Any]:
        return {"charge": {"retries": 2}} if order["priority"] == "express" else {}


def test_a_workflow_class_adjusts_its_steps_with_its_step_settings_method_in_a_worker(
    backend: Backend,
) -> None:
    """A worker applies the class's hook as the runtime does: two retries for the express order."""
    ExpressCheckout.declines[:] = [True, True, False]
    app = Conveyor(backend, workflows=[ExpressCheckout])
    app.start(ExpressCheckout, {"priority": "express"}, workflow_id="class-1")
    app.worker(poll_interval_seconds=0.05).run(until_idle=True)
    status = app.status("class-1")
    assert status.is_completed()
    assert status.step("charge").attempts == 3


@pytest.mark.parametrize(
    ("hook", "words"),
    [
        (lambda order: {"refund": {"timeout": 5}}, "names step 'refund', which the workflow does not have"),
        (
            lambda order: {"charge": {"retry_limit": 1}},
            "the setting 'retry_limit'; the settings are timeout, retries",
        ),
        (lambda order: {"charge": {"timeout": -1}}, "the timeout of step 'charge'"),
        (lambda order: {"charge": {"timeout": 0}}, "more than zero"),
        (lambda order: {"charge": {"retries": "once"}}, "whole number of retries"),
        (lambda order: {"charge": 5}, "a dict of settings"),
        (lambda order: ["charge"], "must return {step name: {setting: value}}"),
        (lambda order: order["missing"], "raised KeyError"),
    ],
)
def test_a_hook_that_names_an_unknown_step_or_setting_is_refused_before_the_run_is_recorded(
    backend: Backend, hook: Any, words: str
) -> None:
    """What the hook gives a run is checked when it is recorded; nothing is stored if it is wrong."""
    workflow = checkout_flow([], hook)
    app = Conveyor(backend, workflows=[workflow])
    with pytest.raises(DefinitionError, match=_escaped(words)):
        app.run(workflow, {"priority": "express"}, workflow_id="bad-1")
    with pytest.raises(RunNotFoundError):
        app.status("bad-1")
    with pytest.raises(DefinitionError):
        app.start(workflow, {"priority": "express"}, workflow_id="bad-2")


def test_a_hook_that_is_not_a_function_is_refused_when_the_flow_is_declared() -> None:
    """``step_settings=`` must be callable."""
    with pytest.raises(DefinitionError, match="step_settings of flow 'x' must be a function"):
        Flow("x", step_settings={"charge": {"timeout": 1}})  # type: ignore[arg-type]


def _escaped(words: str) -> str:
    import re

    return re.escape(words)


# -- annotations ----------------------------------------------------------------------------------------


def test_annotations_are_committed_with_their_steps_result_and_a_failed_attempts_are_dropped(
    backend: Backend,
) -> None:
    """The declined attempt's note is gone; the retried attempt's notes, and confirm's, are in the status."""
    workflow = checkout_flow([True, False])
    app = Conveyor(backend, workflows=[workflow])
    status = app.run(workflow, {"priority": "express"}, workflow_id="notes-1")
    assert status.is_completed()
    expected = [
        ("charge_attempted", {"attempt": 2}, "charge"),
        ("payment_processed", {"payment_id": "pi_1", "ms": 120}, "charge"),
        ("checkout_completed", {"steps_completed": 3}, "confirm"),
    ]
    assert [(note.name, note.content, note.step) for note in status.annotations] == expected
    read = app.status("notes-1")
    assert [(note.name, note.content, note.step) for note in read.annotations] == expected
    assert all(note.at is not None for note in read.annotations)
    assert [entry["name"] for entry in read.to_dict()["annotations"]] == [name for name, _, _ in expected]


def test_annotations_of_parallel_branches_and_of_an_undo_are_kept(backend: Backend) -> None:
    """Branches annotating side by side each commit their own; an undo's note comes with its checkpoint."""

    def release(result: str, context: StepContext) -> None:
        context.annotate("released", result)

    @task(compensate=release)
    def reserve(order: dict[str, Any], context: StepContext) -> str:
        return "r1"

    @task(timeout_secs=5)
    def label(reservation: str, context: StepContext) -> str:
        context.annotate("labelled", None)
        return "L"

    @task(timeout_secs=5)
    def invoice(reservation: str, context: StepContext) -> str:
        context.annotate("invoiced", 12.5)
        return "I"

    @task
    def post(results: dict[str, Any]) -> str:
        raise NonRetryableError("carrier down")

    workflow = Flow("forked").then(reserve).fork().branch(label).branch(invoice).join(post).build()
    status = Conveyor(backend, workflows=[workflow]).run(workflow, {}, workflow_id="fork-1")
    assert status.state is RunState.COMPENSATED
    names = [note.name for note in status.annotations]
    assert sorted(names[:2]) == ["invoiced", "labelled"]
    assert names[2:] == ["released"]
    assert status.annotations[-1].content == "r1"


def test_a_run_with_no_hook_and_no_annotations_does_no_extra_work_per_step(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Neither the settings hook nor the annotated write is ever reached by a plain chain."""
    from conveyor.engine import driver

    def never(*args: Any) -> Any:
        raise AssertionError("reached by a run with no hook and no annotations")

    monkeypatch.setattr(driver, "workflow_for_run", never)
    monkeypatch.setattr(driver.RunDriver, "_before_write", never)
    monkeypatch.setattr(type(backend), "record_checkpoint_annotated", never)

    @task
    def one(value: int) -> int:
        return value + 1

    workflow = Flow("plain").then(one).then(one, name="two").build()
    status = Conveyor(backend, workflows=[workflow]).run(workflow, 1, workflow_id="plain-1")
    assert status.output() == 3
    assert status.annotations == ()


def test_an_annotation_that_cannot_be_stored_fails_its_step_like_any_error(backend: Backend) -> None:
    """A content that is not JSON, or a blank name, is a clear error raised in the step."""

    @task
    def odd(value: int, context: StepContext) -> int:
        context.annotate("odd", object())
        return value

    @task
    def blank(value: int, context: StepContext) -> int:
        context.annotate(" ", 1)
        return value

    app = Conveyor(backend)
    failed = app.run(Flow("odd").then(odd).build(), 1, workflow_id="odd-1")
    assert failed.state is RunState.FAILED
    assert "the content of annotation 'odd'" in str(failed.error())
    unnamed = app.run(Flow("blank").then(blank).build(), 1, workflow_id="blank-1")
    assert "an annotation's name must be printable text" in str(unnamed.error())


def test_annotate_outside_a_run_is_a_clear_error() -> None:
    """A StepContext built by hand has no run to record on."""
    from conveyor import ConveyorError

    context = StepContext(workflow_id="w", workflow_name="n", step_name="s", attempt=1, correlation_id="c")
    with pytest.raises(ConveyorError, match="annotate\\(\\) records on a run conveyor drives"):
        context.annotate("x")


def test_annotations_add_no_transaction_they_ride_on_their_steps_checkpoint(backend: Backend) -> None:
    """A run whose steps annotate writes as many checkpoints as one whose steps do not."""
    writes: list[str] = []
    for name in ("record_checkpoint", "record_checkpoint_annotated", "record_checkpoints"):
        method = getattr(backend, name)

        def counted(*args: Any, _method: Any = method, _name: str = name) -> Any:
            writes.append(_name)
            return _method(*args)

        setattr(backend, name, counted)
    app = Conveyor(backend)
    plain = checkout_flow([], hook=None)

    @task
    def validate(order: dict[str, Any]) -> dict[str, Any]:
        return order

    @task
    def charge(order: dict[str, Any]) -> str:
        return "pi_1"

    @task
    def confirm(payment_id: str) -> str:
        return f"confirmed {payment_id}"

    quiet = Flow("quiet").then(validate).then(charge).then(confirm).build()
    app.run(quiet, {}, workflow_id="quiet-1")
    without = len(writes)
    writes.clear()
    assert app.run(plain, {}, workflow_id="noted-1").is_completed()
    assert len(writes) == without
    assert writes.count("record_checkpoint_annotated") == 2  # charge's and confirm's
