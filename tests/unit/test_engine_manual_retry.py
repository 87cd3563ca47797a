"""A failed run retried by hand keeps its completed steps; an input schema refuses bad input up front."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest

from conveyor import (
    Flow,
    InMemoryBackend,
    InvalidInputError,
    NonRetryableError,
    RunNotRetryableError,
    RunState,
    StepContext,
    retry_workflow,
    run_durable_workflow,
    task,
)


class Faults:
    inventory_down = True


def checkout(calls: list[str], keys: list[str]) -> Any:
    @task
    def validate_cart(cart: dict[str, Any]) -> dict[str, Any]:
        calls.append("validate_cart")
        return cart

    @task(compensate=lambda payment: calls.append("refund"))
    def process_payment(cart: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        calls.append("process_payment")
        keys.append(ctx.idempotency_key)
        return {"payment_id": "pi_1"}

    @task
    def update_inventory(payment: dict[str, Any], ctx: StepContext) -> str:
        calls.append("update_inventory")
        keys.append(ctx.idempotency_key)
        if Faults.inventory_down:
            raise NonRetryableError("Inventory service timeout after 30 seconds")
        return "updated"

    return Flow("checkout").then(validate_cart).then(process_payment).then(update_inventory).build()


def test_retry_runs_the_failed_step_again_and_keeps_what_completed() -> None:
    """After the fault is fixed, retry re-runs update_inventory but not validate_cart or the payment."""
    calls: list[str] = []
    keys: list[str] = []
    workflow = checkout(calls, keys)
    backend = InMemoryBackend()
    Faults.inventory_down = True
    failed = run_durable_workflow(workflow, "task-1", {"items": 1}, backend)
    assert failed.state is RunState.COMPENSATED  # the payment was refunded
    assert calls == ["validate_cart", "process_payment", "update_inventory", "refund"]

    Faults.inventory_down = False
    retried = retry_workflow(workflow, "task-1", backend)
    assert retried.state is RunState.COMPLETED
    assert retried.output() == "updated"
    # validate_cart kept; the refunded payment is charged again, under a new idempotency key.
    assert calls[4:] == ["process_payment", "update_inventory"]
    assert keys == [
        "task-1:process_payment",
        "task-1:update_inventory",
        "task-1:process_payment:retry1",
        "task-1:update_inventory:retry1",
    ]


def test_retry_of_a_failed_run_with_nothing_undone_reruns_only_the_failed_step() -> None:
    """A run that ended failed (nothing to undo) re-runs just the failed step and what follows."""
    calls: list[str] = []
    attempts = iter([True, False])

    @task
    def first(value: int) -> int:
        calls.append("first")
        return value

    @task
    def second(value: int) -> int:
        calls.append("second")
        if next(attempts):
            raise NonRetryableError("broken")
        return value + 1

    workflow = Flow("two").then(first).then(second).build()
    backend = InMemoryBackend()
    assert run_durable_workflow(workflow, "w", 1, backend).state is RunState.FAILED
    status = retry_workflow(workflow, "w", backend)
    assert status.output() == 2
    assert calls == ["first", "second", "second"]
    assert status.step("second").attempts == 1


def test_retry_of_a_run_that_did_not_fail_is_refused() -> None:
    """Retrying a completed run raises RunNotRetryableError naming its state."""
    workflow = Flow("one").then(task(name="ok")(lambda value: value)).build()
    backend = InMemoryBackend()
    run_durable_workflow(workflow, "done", 1, backend)
    with pytest.raises(RunNotRetryableError, match="run 'done' is completed"):
        retry_workflow(workflow, "done", backend)


class CheckoutInput(pydantic.BaseModel):
    order_id: str
    amount_cents: int


def test_input_schema_refuses_bad_input_naming_the_field_and_stores_nothing() -> None:
    """Flow(input_schema=...) checks the input before a run is recorded."""
    workflow = Flow("schema", input_schema=CheckoutInput).then(task(name="echo")(lambda order: order)).build()
    backend = InMemoryBackend()
    with pytest.raises(InvalidInputError, match="field 'amount_cents'") as raised:
        run_durable_workflow(workflow, "bad", {"order_id": "A", "amount_cents": "lots"}, backend)
    assert raised.value.fields == ["amount_cents"]
    assert backend.load_run("bad") is None
    good = run_durable_workflow(workflow, "good", {"order_id": "A", "amount_cents": 5}, backend)
    assert good.output() == {"order_id": "A", "amount_cents": 5}
