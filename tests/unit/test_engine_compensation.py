"""Seed 000's compensation table, run on the engine: when a step fails for good, the undo of every completed
step runs, newest first, each given that step's result."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor import (
    FakeClock,
    Flow,
    InMemoryBackend,
    NonRetryableError,
    RetryPolicy,
    RunState,
    StepState,
    run_durable_workflow,
    task,
)


class Shop:
    """Records every side effect and undo the order workflow makes, and fails the step it is told to."""

    def __init__(self, failing_step: str | None = None, failing_undo: str | None = None) -> None:
        self.failing_step = failing_step
        self.failing_undo = failing_undo
        self.effects: list[str] = []
        self.undos: list[tuple[str, Any]] = []

    def step(self, name: str) -> None:
        self.effects.append(name)
        if name == self.failing_step:
            raise RuntimeError(f"{name} failed")

    def undo(self, name: str, value: Any) -> None:
        if name == self.failing_undo:
            raise RuntimeError(f"undo of {name} failed")
        self.undos.append((name, value))


def order_workflow(shop: Shop) -> Any:
    """Seed 000's OrderProcessingReactor as a Flow."""

    @task
    def validate_order(order: dict[str, Any]) -> dict[str, Any]:
        shop.step("validate_order")
        return order

    @task
    def check_inventory(order: dict[str, Any]) -> dict[str, Any]:
        shop.step("check_inventory")
        return order

    @task(compensate=lambda result: shop.undo("release_reservation", result["reservation_id"]))
    def reserve_inventory(order: dict[str, Any]) -> dict[str, Any]:
        shop.step("reserve_inventory")
        return {**order, "reservation_id": "res_123"}

    @task(compensate=lambda result: shop.undo("refund", result["payment_id"]))
    def process_payment(order: dict[str, Any]) -> dict[str, Any]:
        shop.step("process_payment")
        return {**order, "payment_id": "pay_1"}

    @task(compensate=lambda result: shop.undo("restore_inventory", result["reservation_id"]))
    def update_inventory(order: dict[str, Any]) -> dict[str, Any]:
        shop.step("update_inventory")
        return order

    @task
    def update_order_status(order: dict[str, Any]) -> dict[str, Any]:
        shop.step("update_order_status")
        return order

    @task
    def send_confirmation(order: dict[str, Any]) -> dict[str, Any]:
        shop.step("send_confirmation")
        return {**order, "confirmation_sent": True}

    return (
        Flow("order-processing")
        .then(validate_order)
        .then(check_inventory)
        .then(reserve_inventory)
        .then(process_payment)
        .then(update_inventory)
        .then(update_order_status)
        .then(send_confirmation)
        .build()
    )


def run(shop: Shop) -> Any:
    return run_durable_workflow(
        order_workflow(shop), "order-12345", {"order_id": "12345"}, InMemoryBackend(), clock=FakeClock()
    )


def test_failure_before_any_change_compensates_nothing() -> None:
    """check_inventory failing: nothing to undo, and the run ends failed with the step's error."""
    shop = Shop(failing_step="check_inventory")
    status = run(shop)
    assert shop.undos == []
    assert status.state is RunState.FAILED
    assert status.error().step_name == "check_inventory"
    assert status.error().message == "check_inventory failed"
    assert status.error().attempts == 1


def test_payment_failure_releases_the_reservation() -> None:
    """process_payment failing: the reservation res_123 is released, and nothing else is undone."""
    shop = Shop(failing_step="process_payment")
    status = run(shop)
    assert shop.undos == [("release_reservation", "res_123")]
    assert status.state is RunState.COMPENSATED
    assert status.is_failed()
    assert status.step("reserve_inventory").state is StepState.COMPENSATED
    assert status.step("process_payment").state is StepState.FAILED
    assert status.step("update_inventory").state is StepState.PENDING


def test_confirmation_failure_undoes_inventory_payment_and_reservation_newest_first() -> None:
    """send_confirmation failing: restore inventory, refund, then release, in reverse completion order."""
    shop = Shop(failing_step="send_confirmation")
    status = run(shop)
    assert shop.undos == [
        ("restore_inventory", "res_123"),
        ("refund", "pay_1"),
        ("release_reservation", "res_123"),
    ]
    assert status.state is RunState.COMPENSATED
    assert "step 'send_confirmation' failed after 1 attempt" in str(status.error())


def test_undo_that_keeps_failing_ends_compensation_failed_after_undoing_the_rest() -> None:
    """An undo that fails on every retry marks the run compensation_failed; the other undos still run."""
    shop = Shop(failing_step="send_confirmation", failing_undo="refund")
    status = run(shop)
    assert status.state is RunState.COMPENSATION_FAILED
    assert status.needs_attention()
    refund = status.step("process_payment")
    assert refund.state is StepState.COMPENSATION_FAILED
    assert refund.compensation_attempts == 6  # the default compensation policy: 5 retries
    assert refund.compensation_error is not None
    assert refund.compensation_error.message == "undo of refund failed"
    assert shop.undos == [("restore_inventory", "res_123"), ("release_reservation", "res_123")]


def test_undo_receives_the_step_input_when_it_takes_two_arguments() -> None:
    """An undo declaring two parameters gets the step's result and the step's input."""
    seen: list[tuple[Any, Any]] = []

    @task(compensate=lambda result, order: seen.append((result, order)))
    def reserve(order: dict[str, Any]) -> str:
        return "res_9"

    @task
    def fail(reservation: str) -> None:
        raise NonRetryableError("card declined")

    workflow = Flow("two-args").then(reserve).then(fail).build()
    status = run_durable_workflow(workflow, "w", {"sku": "A"}, InMemoryBackend())
    assert status.state is RunState.COMPENSATED
    assert seen == [("res_9", {"sku": "A"})]


def test_compensation_retries_its_undo_until_it_succeeds() -> None:
    """An undo that fails twice is retried with backoff, then the run ends compensated."""
    clock = FakeClock()
    failures = iter([True, True, False])

    def release(result: str) -> None:
        if next(failures):
            raise ConnectionError("inventory service down")

    @task(compensate=release, compensation_retries=RetryPolicy(max_retries=3, initial_delay_secs=5))
    def reserve(order: dict[str, Any]) -> str:
        return "res_1"

    @task
    def pay(reservation: str) -> None:
        raise NonRetryableError("declined")

    workflow = Flow("undo-retry").then(reserve).then(pay).build()
    status = run_durable_workflow(workflow, "w", {}, InMemoryBackend(), clock=clock)
    assert status.state is RunState.COMPENSATED
    assert status.step("reserve").compensation_attempts == 3
    assert clock.sleeps == [5.0, 10.0]


@pytest.mark.parametrize("undo_is_async", [False, True])
def test_async_and_sync_undos_both_run(undo_is_async: bool) -> None:
    """Undos may be plain functions or coroutines."""
    undone: list[str] = []

    def sync_undo(result: str) -> None:
        undone.append(result)

    async def async_undo(result: str) -> None:
        undone.append(result)

    @task(compensate=async_undo if undo_is_async else sync_undo)
    def reserve(order: dict[str, Any]) -> str:
        return "res_2"

    @task
    def pay(reservation: str) -> None:
        raise NonRetryableError("declined")

    status = run_durable_workflow(Flow("u").then(reserve).then(pay).build(), "w", {}, InMemoryBackend())
    assert status.state is RunState.COMPENSATED
    assert undone == ["res_2"]
