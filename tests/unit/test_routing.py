"""Routing: a route step picks one branch by a key; the other branches' steps are skipped in the same
checkpoint. Pure decide/settle first, then the Flow builder, workflow classes and the engine in memory."""

from __future__ import annotations

import time
from enum import StrEnum
from typing import Any

import pytest

from conveyor import (
    Conveyor,
    DefinitionError,
    Flow,
    InMemoryBackend,
    RetryPolicy,
    RouteKeyError,
    RunState,
    Saga,
    StepState,
    from_result,
    from_route,
    route,
    run_workflow,
    step,
    task,
)
from conveyor.core.decide import Action, decide
from conveyor.core.records import RunRecord, completion_counts, pending_steps
from conveyor.core.settle import RouteChosen, StepFailed, StepSucceeded, reopen_for_retry, settle
from conveyor.definition.control import Route
from conveyor.definition.workflow import Workflow

done: list[str] = []


class Speed(StrEnum):
    EXPRESS = "express"
    STANDARD = "standard"


@pytest.fixture(autouse=True)
def _forget() -> None:
    done.clear()


@task
def check(order: dict[str, Any]) -> dict[str, Any]:
    done.append("check")
    return order


def speed(order: dict[str, Any]) -> str:
    done.append("speed")
    return str(order["speed"])


@task(compensate=lambda result: done.append("undo express"))
def express(order: dict[str, Any]) -> str:
    done.append("express")
    return f"express {order['id']}"


@task(compensate=lambda result: done.append("undo standard"))
def standard(order: dict[str, Any]) -> str:
    done.append("standard")
    return f"standard {order['id']}"


@task
def label(shipment: str) -> str:
    done.append("label")
    return f"{shipment} labelled"


@task
def notify(shipment: str) -> str:
    done.append("notify")
    return f"sent {shipment}"


def shipping(**route_options: Any) -> Workflow:
    options: dict[str, Any] = {"branches": {"express": express, "standard": [standard, label]}}
    options.update(route_options)
    return Flow("ship").then(check).route(speed, **options).then(notify).build()


def fresh_run(workflow: Workflow) -> RunRecord:
    return RunRecord(
        "r1", workflow.name, workflow.version, RunState.RUNNING, '{"id":"1"}', "", workflow.step_names,
        pending_steps(workflow.step_names), 0.0, 0.0,
    )  # fmt: skip


def settled(workflow: Workflow, run: RunRecord, name: str, outcome: Any) -> RunRecord:
    new, _checkpoint = settle(workflow, run, workflow.step(name), outcome)
    assert (new.completed_count, new.last_completion_order) == completion_counts(new.steps.values())
    return new


# --- pure: settle and decide ---------------------------------------------------------------------------


def test_choosing_a_branch_skips_the_other_branches_steps_in_the_same_checkpoint() -> None:
    """RouteChosen completes the route step and writes every step of the unchosen branches as skipped."""
    workflow = shipping()
    run = settled(workflow, fresh_run(workflow), "check", StepSucceeded('{"id":"1"}', 1.0, 2.0))
    new, checkpoint = settle(
        workflow, run, workflow.step("speed"), RouteChosen('"express"', 2.0, 3.0, ("standard", "label"))
    )
    assert [(record.name, record.state) for record in checkpoint.steps] == [
        ("speed", StepState.COMPLETED),
        ("standard", StepState.SKIPPED),
        ("label", StepState.SKIPPED),
    ]
    assert new.steps["speed"].result == '"express"'
    assert new.completed_count == 4  # check, speed and the two skipped steps are done
    assert new.state is RunState.RUNNING


def test_decide_runs_only_the_chosen_branch_then_the_step_after_the_route() -> None:
    """After the route, only the chosen branch's step is ready; the step after it waits for it alone."""
    workflow = shipping()
    run = settled(workflow, fresh_run(workflow), "check", StepSucceeded('{"id":"1"}', 1.0, 2.0))
    run = settled(workflow, run, "speed", RouteChosen('"express"', 2.0, 3.0, ("standard", "label")))
    decision = decide(workflow, run, 4.0)
    assert [spec.name for spec in decision.steps] == ["express"]
    run = settled(workflow, run, "express", StepSucceeded('"express 1"', 4.0, 5.0))
    decision = decide(workflow, run, 5.0)
    assert [spec.name for spec in decision.steps] == ["notify"]
    run = settled(workflow, run, "notify", StepSucceeded('"sent express 1"', 5.0, 6.0))
    assert run.state is RunState.COMPLETED
    assert run.output == '"sent express 1"'


def test_skipped_steps_are_never_compensated() -> None:
    """A failure after the route undoes the chosen branch only: skipped steps have no undo."""
    workflow = shipping()
    run = settled(workflow, fresh_run(workflow), "check", StepSucceeded('{"id":"1"}', 1.0, 2.0))
    run = settled(workflow, run, "speed", RouteChosen('"standard"', 2.0, 3.0, ("express",)))
    run = settled(workflow, run, "standard", StepSucceeded('"standard 1"', 3.0, 4.0))
    run = settled(workflow, run, "label", StepFailed(ValueError("no label"), False, 4.0, 5.0))
    assert run.state is RunState.COMPENSATING
    decision = decide(workflow, run, 6.0)
    assert decision.action is Action.RUN_COMPENSATION
    assert decision.steps[0].name == "standard"


def test_a_retry_by_hand_that_runs_the_route_again_reopens_its_skipped_branches() -> None:
    """Once the route step is undone and the run retried, the route may choose otherwise: skipped opens."""
    workflow = Flow("ship2").route(speed, branches={"express": express, "standard": standard}).then(notify)
    built = workflow.build()
    run = settled(built, fresh_run(built), "speed", RouteChosen('"express"', 1.0, 2.0, ("standard",)))
    run = settled(built, run, "express", StepFailed(ValueError("x"), False, 2.0, 3.0))
    assert run.state is RunState.FAILED  # nothing completed has an undo (the route has none)
    reopened, _ = reopen_for_retry(built, run, 4.0)
    assert reopened.steps["standard"].state is StepState.SKIPPED  # the route stays done: so does its choice
    undone = run.steps["speed"]._replace(state=StepState.COMPENSATED)
    run.steps["speed"] = undone
    reopened, checkpoint = reopen_for_retry(built, run, 4.0)
    assert reopened.steps["standard"].state is StepState.PENDING
    assert {record.name for record in checkpoint.steps} == {"speed", "express", "standard"}


def test_the_definition_hash_covers_the_branches_and_the_default() -> None:
    """Moving a step to another branch, or changing the default, changes the hash."""
    base = shipping().definition_hash
    moved = (
        Flow("ship").then(check).route(speed, branches={"express": [express, label], "standard": standard})
    )
    assert moved.then(notify).build().definition_hash != base
    assert shipping(default="express").definition_hash != base
    assert shipping().definition_hash == base


def test_route_knows_its_branches_and_skips_the_others() -> None:
    """A route's keys, the steps a choice skips, and its default."""
    control = shipping().step("speed").control
    assert isinstance(control, Route)
    assert control.keys == ("express", "standard")
    assert control.skipped_by("express") == ("standard", "label")
    assert control.choose("standard", "speed") == "standard"
    with pytest.raises(RouteKeyError) as raised:
        control.choose("overnight", "speed")
    assert raised.value.key == "overnight"
    assert raised.value.known == ("express", "standard")
    assert "'overnight'" in str(raised.value)
    assert "'express', 'standard'" in str(raised.value)


# --- the Flow builder, run in memory ---------------------------------------------------------------------


def test_the_chosen_branch_runs_and_the_next_step_receives_its_result() -> None:
    """Express runs one step; standard runs two; the step after the route gets the branch's last result."""
    workflow = shipping()
    assert not workflow.is_chain
    assert run_workflow(workflow, {"id": "1", "speed": "express"}) == "sent express 1"
    assert done == ["check", "speed", "express", "notify"]
    done.clear()
    assert run_workflow(workflow, {"id": "2", "speed": "standard"}) == "sent standard 2 labelled"
    assert done == ["check", "speed", "standard", "label", "notify"]


def test_skipped_steps_and_the_chosen_branch_show_in_the_status() -> None:
    """The status names the branch the route chose and shows the other branches' steps skipped."""
    app = Conveyor(InMemoryBackend(), workflows=[shipping()])
    status = app.run("ship", {"id": "1", "speed": "express"}, workflow_id="s-1")
    assert status.is_completed()
    assert status.step("speed").result == "express"
    assert status.step("standard").state is StepState.SKIPPED
    assert status.step("label").state is StepState.SKIPPED
    assert status.step("express").state is StepState.COMPLETED
    assert status.to_dict()["steps"][3]["state"] == "skipped"


def test_an_unknown_key_without_a_default_fails_the_route_step_naming_the_key_and_the_known_keys() -> None:
    """The route step fails at once (not retried, whatever its policy); nothing of any branch runs."""
    workflow = Flow("ship").route(
        task(retries=RetryPolicy(max_attempts=5))(speed), branches={"express": express, "standard": standard}
    )
    app = Conveyor(InMemoryBackend(), workflows=[workflow.then(notify).build()])
    status = app.run("ship", {"id": "1", "speed": "overnight"}, workflow_id="s-2")
    assert status.state is RunState.FAILED
    error = status.error()
    assert error is not None
    assert (error.step_name, error.error_type, error.attempts) == ("speed", "RouteKeyError", 1)
    assert "'overnight'" in error.message
    assert "'express', 'standard'" in error.message
    assert done == ["speed"]


def test_an_unknown_key_takes_the_default_branch() -> None:
    """default= names one of the keys: a key that names no branch runs that one."""
    assert run_workflow(shipping(default="standard"), {"id": "3", "speed": "overnight"}) == (
        "sent standard 3 labelled"
    )


def test_a_default_branch_of_its_own_and_an_empty_branch() -> None:
    """default= may be a branch of its own; a branch of None passes the route's value straight on."""

    @task
    def pickup(order: dict[str, Any]) -> dict[str, Any]:
        return {**order, "pickup": True}

    @task
    def other(order: dict[str, Any]) -> dict[str, Any]:
        return {**order, "other": True}

    @task
    def summary(order: dict[str, Any]) -> dict[str, Any]:
        return order

    workflow = (
        Flow("pick")
        .route(speed, branches={"express": pickup, "none": None}, default=[other])
        .then(summary)
        .build()
    )
    assert run_workflow(workflow, {"speed": "none"}) == {"speed": "none"}
    assert run_workflow(workflow, {"speed": "express"}) == {"speed": "express", "pickup": True}
    assert run_workflow(workflow, {"speed": "else"}) == {"speed": "else", "other": True}
    assert workflow.step("speed").control.default == "default"  # type: ignore[union-attr]


def test_a_route_key_that_is_a_str_enum_member_picks_its_branch() -> None:
    """A StrEnum key is its value."""

    def by_enum(order: dict[str, Any]) -> Speed:
        return Speed(order["speed"])

    workflow = Flow("e").route(by_enum, branches={"express": express, "standard": standard}).then(notify)
    assert run_workflow(workflow.build(), {"id": "9", "speed": "express"}) == "sent express 9"


def test_route_definition_errors_are_clear() -> None:
    """A flow ending in a route, no branches, a default that is no key, a bad branch: each named."""
    with pytest.raises(DefinitionError, match="ends in a route"):
        Flow("x").route(speed, branches={"a": express}).build()
    with pytest.raises(DefinitionError, match="needs branches"):
        Flow("x").route(speed, branches={})
    with pytest.raises(DefinitionError, match="'other', which is none of its branches"):
        Flow("x").route(speed, branches={"a": express}, default="other")
    with pytest.raises(DefinitionError, match="must be a task"):
        Flow("x").route(speed, branches={"a": 3})  # type: ignore[dict-item]
    with pytest.raises(DefinitionError, match="a branch called 'default'"):
        Flow("x").route(speed, branches={"default": express}, default=standard)


def test_a_route_after_a_fork_join_and_before_a_fork() -> None:
    """A route's result feeds a fork's branches like any step's."""

    @task
    def left(value: str) -> str:
        return f"left {value}"

    @task
    def right(value: str) -> str:
        return f"right {value}"

    @task
    def joined(results: dict[str, str]) -> dict[str, str]:
        return results

    workflow = Flow("f").route(speed, branches={"express": express, "standard": standard}).fork()
    built = workflow.branch(left).branch(right).join(joined).build()
    assert run_workflow(built, {"id": "1", "speed": "standard"}) == {
        "left": "left standard 1",
        "right": "right standard 1",
    }


# --- workflow classes ------------------------------------------------------------------------------------


class Shipping(Saga):
    """check, then a route on its speed: express (one step) or standard (two), then notify."""

    @step
    def look(self, order_id: str, speed: str) -> dict[str, str]:
        return {"id": order_id, "speed": speed}

    @route(look=from_result("look"), default="standard")
    def by_speed(self, look: dict[str, str]) -> str:
        done.append("by_speed")
        return look["speed"]

    @step(when=("by_speed", "express"), look=from_result("look"))
    def ship_express(self, look: dict[str, str]) -> str:
        done.append("ship_express")
        return f"express {look['id']}"

    @step(when=("by_speed", "standard"), look=from_result("look"))
    def ship_standard(self, look: dict[str, str]) -> str:
        done.append("ship_standard")
        return f"standard {look['id']}"

    @step(when=("by_speed", "standard"), shipped=from_result("ship_standard"))
    def label_parcel(self, shipped: str) -> str:
        done.append("label_parcel")
        return f"{shipped} labelled"

    @step(shipment=from_route("by_speed"))
    def tell(self, shipment: str) -> str:
        return f"sent {shipment}"


def test_a_class_route_runs_the_steps_declared_for_its_key_and_skips_the_others() -> None:
    """when=(route, key) puts a step on a branch; from_route reads the chosen branch's last result."""
    app = Conveyor(InMemoryBackend(), workflows=[Shipping])
    status = app.run(Shipping, {"order_id": "1", "speed": "express"}, workflow_id="c-1")
    assert status.is_completed()
    assert status.step("tell").result == "sent express 1"
    assert status.step("ship_standard").state is StepState.SKIPPED
    assert status.step("label_parcel").state is StepState.SKIPPED
    assert done == ["by_speed", "ship_express"]
    done.clear()
    status = app.run(Shipping, {"order_id": "2", "speed": "anything"}, workflow_id="c-2")
    assert status.step("tell").result == "sent standard 2 labelled"
    assert status.step("ship_express").state is StepState.SKIPPED
    assert done == ["by_speed", "ship_standard", "label_parcel"]


def test_class_route_declaration_errors_are_clear() -> None:
    """when= naming no route, a route with no branches, an unknown default, reading another branch."""
    with pytest.raises(DefinitionError, match="'nowhere' is not a route declared before it"):

        class NoRoute(Saga):
            @step(when=("nowhere", "a"))
            def one(self) -> None: ...

    with pytest.raises(DefinitionError, match="has no branches"):

        class NoBranches(Saga):
            @route()
            def pick(self) -> str: ...

            @step
            def one(self) -> None: ...

    with pytest.raises(DefinitionError, match="the default of route 'pick'"):

        class BadDefault(Saga):
            @route(default="c")
            def pick(self) -> str: ...

            @step(when=("pick", "a"))
            def one(self) -> None: ...

    with pytest.raises(DefinitionError, match=r"runs only when route 'pick' chooses 'a'; read from_route"):

        class ReadsABranch(Saga):
            @route()
            def pick(self) -> str: ...

            @step(when=("pick", "a"))
            def one(self) -> int: ...

            @step(value=from_result("one"))
            def after(self, value: int) -> None: ...


def test_a_route_step_retries_like_any_step_before_choosing() -> None:
    """The key function fails once and is retried by its policy; then the route chooses."""
    failures = [ValueError("flaky")]

    @task(retries=RetryPolicy(max_attempts=2, initial_delay_secs=0.0))
    def flaky_speed(order: dict[str, Any]) -> str:
        if failures:
            raise failures.pop()
        return "express"

    workflow = Flow("flaky").route(flaky_speed, branches={"express": express}).then(notify).build()
    started = time.monotonic()
    assert run_workflow(workflow, {"id": "4"}) == "sent express 4"
    assert time.monotonic() - started < 5


# --- YAML templates --------------------------------------------------------------------------------------


class PickSpeed:
    def process(self, context: dict[str, Any], results: dict[str, Any]) -> str:
        return str(context["speed"])


class ShipExpress:
    def process(self, context: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
        return {"shipped": "express"}


class ShipStandard:
    def process(self, context: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
        return {"shipped": "standard"}


class Notify:
    def process(self, context: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
        return {"saw": results}


YAML_HANDLERS = {"Ship::Pick": PickSpeed, "Ship::Express": ShipExpress, "Ship::Standard": ShipStandard,
                 "Ship::Notify": Notify}  # fmt: skip

SHIPPING_YAML = """
name: yaml_shipping
step_templates:
  - name: pick
    handler_class: Ship::Pick
    route: true
    default_branch: standard
  - name: express
    handler_class: Ship::Express
    when: {pick: express}
  - name: standard
    handler_class: Ship::Standard
    when: {pick: standard}
  - name: notify
    handler_class: Ship::Notify
    depends_on_steps: [express, standard]
"""


def test_a_yaml_route_runs_the_steps_declared_when_its_key_and_skips_the_others(tmp_path: Any) -> None:
    """route: true makes a route; when: {route: key} a branch step; a skipped step's result is None."""
    from conveyor import load_template

    path = tmp_path / "shipping.yaml"
    path.write_text(SHIPPING_YAML)
    workflow = load_template(path, handlers=YAML_HANDLERS, registry=None)
    app = Conveyor(InMemoryBackend(), workflows=[workflow])
    status = app.run("yaml_shipping", {"speed": "express"}, workflow_id="y-1")
    assert status.is_completed()
    assert status.step("standard").state is StepState.SKIPPED
    assert status.step("notify").result == {
        "saw": {"pick": "express", "express": {"shipped": "express"}, "standard": None}
    }
    other = app.run("yaml_shipping", {"speed": "slow boat"}, workflow_id="y-2")  # the default branch
    assert other.step("express").state is StepState.SKIPPED
    assert other.step("standard").result == {"shipped": "standard"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ("default_branch: standard", "default_branch: boat"),
            r"yaml:7: step 'pick', field 'default_branch': is 'boat'",
        ),
        (("when: {pick: express}", "when: {nowhere: express}"), r"'nowhere', which is not a step declared"),
        (("when: {pick: express}", "when: express"), r"must name one route step"),
        (("route: true", "route: yes please"), r"route.*must be true or false"),
    ],
)
def test_yaml_route_mistakes_are_refused_at_load_time(tmp_path: Any, change: Any, message: str) -> None:
    """A default that is no branch, a when naming no route, a malformed when: each a TemplateError."""
    from conveyor import TemplateError, load_template

    path = tmp_path / "shipping.yaml"
    path.write_text(SHIPPING_YAML.replace(*change))
    with pytest.raises(TemplateError, match=message):
        load_template(path, handlers=YAML_HANDLERS, registry=None)
