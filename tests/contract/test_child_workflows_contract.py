"""Child workflows (``Flow.then_flow``, ``child(...)`` in classes) on every backend: in process and on
workers, their failures, and cancelling or undoing a parent that has them."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from conveyor import (
    ChildWorkflowError,
    Conveyor,
    Flow,
    Saga,
    StepContext,
    child,
    from_result,
    step,
    task,
)
from conveyor.backends.base import Backend
from conveyor.core.states import RunState, StepState


class Log:
    """What the steps of the test workflows did and undid, in order (shared by parent and child)."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.lock = threading.Lock()
        self.hold_pack = threading.Event()
        self.hold_pack.set()
        self.fail_label = False

    def note(self, event: str) -> None:
        with self.lock:
            self.events.append(event)


def shipping(log: Log, version: str = "1") -> Any:
    """pack (undo: unpack) -> label (fails when the log says so); the child workflow."""

    @task(compensate=lambda result: log.note(f"unpack v{version}"))
    def pack(order: dict[str, Any]) -> dict[str, Any]:
        log.note(f"pack v{version} {order['id']}")
        assert log.hold_pack.wait(20)
        return {**order, "parcel": f"P-{order['id']}"}

    @task
    def label(parcel: dict[str, Any]) -> str:
        if log.fail_label:
            raise ValueError("the carrier refused the address")
        log.note("label")
        return f"label for {parcel['parcel']} (v{version})"

    return Flow("shipping", version=version).then(pack).then(label).build()


def order(log: Log, child_flow: Any) -> Any:
    """reserve (undo: release) -> the child -> confirm; the parent workflow."""

    @task(compensate=lambda result: log.note("release"))
    def reserve(order: dict[str, Any]) -> dict[str, Any]:
        log.note("reserve")
        return {**order, "reserved": True}

    @task
    def confirm(shipped: str) -> str:
        log.note("confirm")
        return f"confirmed: {shipped}"

    return Flow("order").then(reserve).then_flow(child_flow).then(confirm).build()


def test_then_flow_runs_the_child_with_the_previous_result_and_returns_its_output(backend: Backend) -> None:
    """In process: the child is a run of its own (id parent/step, parent recorded); its output flows on."""
    log = Log()
    app = Conveyor(backend, workflows=[order(log, shipping(log))])
    status = app.run("order", {"id": 7}, workflow_id="o-1")
    assert status.state is RunState.COMPLETED
    assert status.output() == "confirmed: label for P-7 (v1)"
    assert log.events == ["reserve", "pack v1 7", "label", "confirm"]
    assert status.step("shipping").child_id == "o-1/shipping"
    assert status.step("shipping").state is StepState.COMPLETED
    child_status = app.status("o-1/shipping")
    assert child_status.is_completed()
    assert child_status.parent_id == "o-1"
    assert child_status.workflow_name == "shipping"
    assert status.to_dict()["steps"][1]["child_id"] == "o-1/shipping"


def test_a_worker_with_one_slot_runs_parent_and_child_the_parent_waits_holding_none(backend: Backend) -> None:
    """The parent waits for its child without a slot: one slot is enough for both, on any worker."""
    log = Log()
    app = Conveyor(backend, workflows=[order(log, shipping(log))])
    app.start("order", {"id": 8}, workflow_id="o-2")
    app.worker(concurrency=1, poll_interval_seconds=0.05).run(until_idle=True)
    status = app.status("o-2")
    assert status.is_completed(), status.to_dict()
    assert status.output() == "confirmed: label for P-8 (v1)"
    assert app.status("o-2/shipping").parent_id == "o-2"


def test_a_class_step_starts_a_workflow_by_name_and_version_through_the_registry(backend: Backend) -> None:
    """child("shipping", version="1") runs v1 though v2 is registered; without a version, the newest."""
    log = Log()

    class Checkout(Saga):
        @step
        def reserve(self, id: int) -> dict[str, Any]:
            return {"id": id, "reserved": True}

        ship = child("shipping", version="1", input=from_result("reserve"))
        newest = child("shipping", input=from_result("reserve"))

        @step(shipped=from_result("ship"), newest=from_result("newest"))
        def confirm(self, shipped: str, newest: str) -> str:
            return f"{shipped} / {newest}"

    app = Conveyor(backend, workflows=[Checkout, shipping(log, "1"), shipping(log, "2")])
    status = app.run(Checkout, {"id": 3}, workflow_id="c-1")
    assert status.is_completed(), status.to_dict()
    assert status.output()["confirm"] == "label for P-3 (v1) / label for P-3 (v2)"
    assert app.status("c-1/ship").workflow_version == "1"
    assert app.status("c-1/newest").workflow_version == "2"


def test_a_failed_child_fails_the_step_for_good_naming_the_child_and_the_parent_compensates(
    backend: Backend,
) -> None:
    """The child fails (and undoes its own steps); the parent's step fails at once; its undos run."""
    log = Log()
    log.fail_label = True
    app = Conveyor(backend, workflows=[order(log, shipping(log))])
    status = app.run("order", {"id": 9}, workflow_id="o-3")
    assert status.state is RunState.COMPENSATED
    error = status.error()
    assert error is not None
    assert error.step_name == "shipping"
    assert error.error_type == "ChildWorkflowError"
    assert error.attempts == 1  # not retried
    assert isinstance(status.exceptions["shipping"], ChildWorkflowError)
    assert "'o-3/shipping'" in error.message
    assert "compensated" in error.message
    assert "the carrier refused the address" in error.message
    assert log.events == ["reserve", "pack v1 9", "unpack v1", "release"]
    assert app.status("o-3/shipping").state is RunState.COMPENSATED


def test_a_child_that_cannot_start_fails_the_step_with_a_clear_error(backend: Backend) -> None:
    """A child workflow nobody registered: the step fails for good, naming the workflow."""

    @task
    def first(value: int) -> int:
        return value

    app = Conveyor(backend, workflows=[Flow("lonely").then(first).then_flow("nowhere").build()])
    status = app.run("lonely", 1, workflow_id="l-1")
    assert status.is_failed()
    error = status.error()
    assert error is not None
    assert error.error_type == "ChildWorkflowError"
    assert "'nowhere'" in error.message
    assert app.backend.load_run("l-1/nowhere") is None


def test_cancelling_the_parent_cancels_its_waiting_child_and_undoes_both(backend: Backend) -> None:
    """The child is held in its first step by a worker; cancel the parent: the child stops, both undo."""
    log = Log()
    log.hold_pack.clear()
    app = Conveyor(backend, workflows=[order(log, shipping(log))])
    app.start("order", {"id": 10}, workflow_id="o-4")
    worker = app.worker(concurrency=2, poll_interval_seconds=0.05)
    thread = threading.Thread(target=worker.run, kwargs={"until_idle": True})
    thread.start()
    deadline = time.monotonic() + 20
    while "pack v1 10" not in log.events and time.monotonic() < deadline:
        time.sleep(0.01)
    cancelled = app.cancel("o-4", "customer asked")
    log.hold_pack.set()
    thread.join(30)
    assert not thread.is_alive()
    parent, child_run = app.status("o-4"), app.status("o-4/shipping")
    assert parent.state is RunState.CANCELLED, (cancelled.to_dict(), parent.to_dict())
    assert parent.cancel_reason == "customer asked"
    assert child_run.state is RunState.CANCELLED
    assert "customer asked" in (child_run.cancel_reason or "")
    assert log.events == ["reserve", "pack v1 10", "unpack v1", "release"]  # the child first, newest


def test_undoing_a_completed_parent_undoes_its_completed_child(backend: Backend) -> None:
    """compensate_workflow on the parent: the child's undos run (it ends cancelled), then the parent's."""
    log = Log()
    app = Conveyor(backend, workflows=[order(log, shipping(log))])
    assert app.run("order", {"id": 11}, workflow_id="o-5").is_completed()
    status = app.compensate("o-5", "returned")
    assert status.state is RunState.CANCELLED, status.to_dict()
    assert status.step("shipping").state is StepState.COMPENSATED
    assert app.status("o-5/shipping").state is RunState.CANCELLED
    assert log.events[-2:] == ["unpack v1", "release"]


def test_a_parent_run_again_by_id_starts_no_second_child(backend: Backend) -> None:
    """The child's id is the parent's and the step's: running the parent again finds the same child."""
    log = Log()
    app = Conveyor(backend, workflows=[order(log, shipping(log))])
    app.run("order", {"id": 12}, workflow_id="o-6")
    again = app.run("order", {"id": 12}, workflow_id="o-6")
    assert again.is_completed()
    assert log.events.count("pack v1 12") == 1


def test_then_flow_refuses_what_is_not_a_workflow() -> None:
    """A clear error at build time for a child that is neither a workflow, a class, nor a name."""
    from conveyor import DefinitionError

    @task
    def first(value: int) -> int:
        return value

    with pytest.raises(DefinitionError, match="then_flow"):
        Flow("bad").then(first).then_flow(42)  # type: ignore[arg-type]
    with pytest.raises(DefinitionError, match="asks for version"):
        Flow("bad").then(first).then_flow(Flow("c", version="1").then(first).build(), version="2")


def test_step_context_is_not_needed_by_children(backend: Backend) -> None:
    """A child step's function is never called: a child whose steps take a context still runs."""

    @task
    def note_id(value: int, context: StepContext) -> str:
        return context.workflow_id

    inner = Flow("inner").then(note_id).build()

    @task
    def start(value: int) -> int:
        return value

    app = Conveyor(backend, workflows=[Flow("outer").then(start).then_flow(inner, name="nested").build()])
    assert app.run("outer", 1, workflow_id="x").output() == "x/nested"


def test_a_run_started_for_a_worker_can_be_run_here_instead(backend: Backend) -> None:
    """app.start then app.run by the same id: the pending run is taken and runs to its end, here.

    (What a parent driven in process does with the child it submitted; it failed with IndexError before:
    the run stayed pending while its steps completed.)
    """

    @task
    def add(value: int) -> int:
        return value + 1

    @task
    def double(value: int) -> int:
        return value * 2

    app = Conveyor(backend, workflows=[Flow("f").then(add).then(double).build()])
    app.start("f", 1, workflow_id="p-1")
    status = app.run("f", 1, workflow_id="p-1")
    assert status.is_completed()
    assert status.output() == 4


class Checked:
    """A YAML step handler: the order's number."""

    def process(self, context: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
        return {"n": context["id"]}


class Confirmed:
    """A YAML step handler reading the child step's result."""

    def process(self, context: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
        return {"shipped": results["shipped"], "n": results["checked"]["n"]}


def test_a_yaml_template_runs_a_child_workflow_by_name_and_version(backend: Backend, tmp_path: Any) -> None:
    """``child_workflow: shipping`` with ``child_version``: the run's input goes to the child."""
    from conveyor import load_template

    path = tmp_path / "t.yaml"
    path.write_text(
        "name: templated\nstep_templates:\n"
        "  - name: checked\n    handler_class: handlers.Checked\n"
        "  - name: shipped\n    child_workflow: shipping\n    child_version: 1\n"
        "    depends_on_step: checked\n"
        "  - name: confirmed\n    handler_class: handlers.Confirmed\n    depends_on_step: shipped\n"
    )
    workflow = load_template(path, handlers={"handlers.Checked": Checked, "handlers.Confirmed": Confirmed})
    log = Log()
    app = Conveyor(backend, workflows=[workflow, shipping(log, "1"), shipping(log, "2")])
    status = app.run(workflow, {"id": 4}, workflow_id="y-1")
    assert status.is_completed(), status.to_dict()
    assert status.output()["confirmed"] == {"shipped": "label for P-4 (v1)", "n": 4}
    assert status.step("shipped").child_id == "y-1/shipped"


def test_a_yaml_child_step_that_is_wrong_is_a_template_error(tmp_path: Any) -> None:
    """child_version without child_workflow, or with a handler too: a TemplateError naming the step."""
    from conveyor import TemplateError, load_template

    path = tmp_path / "t.yaml"
    for declared, message in (
        ("    child_version: 2\n    handler_class: x.Y\n", "child_version needs child_workflow"),
        ("    child_workflow: shipping\n    delay: 5m\n", "not delay and child_workflow"),
    ):
        path.write_text(f"name: bad\nstep_templates:\n  - name: w\n{declared}")
        with pytest.raises(TemplateError, match=message):
            load_template(path, handlers={})
