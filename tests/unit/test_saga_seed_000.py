"""Seed 000 ported literally: its three reactors as workflow classes, with no ``after=`` anywhere.

Each step, argument, retry policy and undo is the seed's. The steps run in the order they are written, each
after the one before it, and the seed's compensation table holds.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import pydantic
import pytest

from conveyor import (
    FakeClock,
    InMemoryBackend,
    RetryPolicy,
    RunState,
    Saga,
    SagaResult,
    StepState,
    Worker,
    from_result,
    step,
)

SEED_ORDER = (
    "validate_order",
    "check_inventory",
    "reserve_inventory",
    "process_payment",
    "update_inventory",
    "update_order_status",
    "send_confirmation",
)


# -- the seed's models and services ----------------------------------------------------------------------


class Item(pydantic.BaseModel):
    product_id: int
    quantity: int


class Customer(pydantic.BaseModel):
    email: str
    card_token: str


class Order(pydantic.BaseModel):
    id: str
    items: list[Item]
    total: int
    currency: str = "EUR"
    customer: Customer
    status: str = "pending"
    payment_id: str | None = None

    def is_processed(self) -> bool:
        return self.status == "completed"

    def is_cancelled(self) -> bool:
        return self.status == "cancelled"


@dataclass
class PaymentResult:
    success: bool
    id: str | None = None
    error: str | None = None


@dataclass
class Shop:
    """``Order``, ``Product``, ``InventoryService``, ``PaymentService`` and ``EmailService``; ``journal``
    records every call that changes something, in call order."""

    orders: dict[str, Order] = field(default_factory=dict)
    inventory_count: dict[int, int] = field(default_factory=lambda: {1: 10, 2: 10})
    journal: list[tuple[str, Any]] = field(default_factory=list)
    payment: PaymentResult = field(default_factory=lambda: PaymentResult(success=True, id="pay_1"))
    email_succeeds: bool = True

    def reserve_items(self, items: list[Item]) -> str | None:
        self.journal.append(("reserve_items", [item.product_id for item in items]))
        return "res_123"

    def release_reservation(self, reservation_id: str) -> None:
        self.journal.append(("release_reservation", reservation_id))

    def confirm_reservation(self, reservation_id: str) -> bool:
        self.journal.append(("confirm_reservation", reservation_id))
        return True

    def restore_from_reservation(self, reservation_id: str) -> None:
        self.journal.append(("restore_from_reservation", reservation_id))

    def restore_order_items(self, order: Order) -> None:
        self.journal.append(("restore_order_items", order.id))

    def charge(self, *, amount: int, currency: str, card_token: str, description: str) -> PaymentResult:
        self.journal.append(("charge", amount))
        return self.payment

    def refund(self, payment_id: str) -> None:
        self.journal.append(("refund", payment_id))

    def update_order(self, order_id: str, **changes: Any) -> None:
        self.orders[order_id] = self.orders[order_id].model_copy(update=changes)
        self.journal.append(("update_order", changes))

    def send_order_confirmation(self, *, to: str, order: Order, payment_id: str) -> bool:
        self.journal.append(("send_order_confirmation", to))
        return self.email_succeeds

    def calls(self) -> list[str]:
        return [name for name, _ in self.journal]

    def undos(self) -> list[tuple[str, Any]]:
        names = {"release_reservation", "refund", "restore_from_reservation"}
        return [entry for entry in self.journal if entry[0] in names]


shop = Shop()


@pytest.fixture(autouse=True)
def fresh_shop(monkeypatch: pytest.MonkeyPatch) -> Shop:
    """A shop holding one pending order, 12345, for two products with ten of each in stock."""
    fresh = Shop()
    fresh.orders["12345"] = Order(
        id="12345",
        items=[Item(product_id=1, quantity=2), Item(product_id=2, quantity=1)],
        total=4599,
        customer=Customer(email="ada@example.com", card_token="tok_visa"),
    )
    monkeypatch.setattr(f"{__name__}.shop", fresh)
    return fresh


# -- the seed's reactors ------------------------------------------------------------------------------


class OrderArgs(pydantic.BaseModel):
    """``validate_args do required(:order_id).filled(:string) end``."""

    order_id: str = pydantic.Field(min_length=1)


class OrderProcessingReactor(Saga):
    """Validate an order, check and reserve its stock, charge it, confirm the stock, complete and email it."""

    input_schema = OrderArgs
    retry_defaults = RetryPolicy(max_attempts=3, backoff="exponential", initial_delay_secs=2)

    @step
    def validate_order(self, order_id: str) -> dict[str, Order]:
        order = shop.orders.get(order_id)
        if order is None:
            raise RuntimeError("Order not found")
        if order.is_processed():
            raise RuntimeError("Order already processed")
        if order.is_cancelled():
            raise RuntimeError("Order cancelled")
        return {"order": order}

    @step(order=from_result(validate_order, "order"))
    def check_inventory(self, order: Order) -> dict[str, bool]:
        unavailable_items = [
            {
                "product_id": item.product_id,
                "requested": item.quantity,
                "available": shop.inventory_count[item.product_id],
            }
            for item in order.items
            if shop.inventory_count[item.product_id] < item.quantity
        ]
        if unavailable_items:
            raise RuntimeError(f"Insufficient inventory: {unavailable_items}")
        return {"inventory_checked": True}

    @step(order=from_result(validate_order, "order"))
    def reserve_inventory(self, order: Order) -> dict[str, str]:
        reservation_id = shop.reserve_items(order.items)
        if not reservation_id:
            raise RuntimeError("Inventory reservation failed")
        return {"reservation_id": reservation_id}

    @reserve_inventory.undo
    def release_reservation(self, reservation_id: str | None, **_: Any) -> None:
        if reservation_id:
            shop.release_reservation(reservation_id)

    @step(
        order=from_result(validate_order, "order"),
        retries=RetryPolicy(max_attempts=2, backoff="fixed", initial_delay_secs=30),
    )
    def process_payment(self, order: Order) -> dict[str, Any]:
        payment_result = shop.charge(
            amount=order.total,
            currency=order.currency,
            card_token=order.customer.card_token,
            description=f"Order #{order.id}",
        )
        if not payment_result.success:
            raise RuntimeError(f"Payment failed: {payment_result.error}")
        return {"payment_id": payment_result.id, "payment_amount": order.total}

    @process_payment.undo
    def refund_payment(self, payment_id: str | None, **_: Any) -> None:
        if payment_id:
            shop.refund(payment_id)

    @step(
        order=from_result(validate_order, "order"),
        reservation_id=from_result(reserve_inventory, "reservation_id"),
    )
    def update_inventory(self, order: Order, reservation_id: str) -> dict[str, bool]:
        if not shop.confirm_reservation(reservation_id):
            raise RuntimeError("Inventory update failed")
        return {"inventory_updated": True}

    @update_inventory.undo
    def restore_inventory(self, order: Order, reservation_id: str | None, **_: Any) -> None:
        if reservation_id:
            shop.restore_from_reservation(reservation_id)

    @step(order=from_result(validate_order, "order"), payment_id=from_result(process_payment, "payment_id"))
    def update_order_status(self, order: Order, payment_id: str) -> dict[str, bool]:
        shop.update_order(order.id, status="completed", payment_id=payment_id)
        return {"order_completed": True}

    @step(
        order=from_result(validate_order, "order"),
        payment_id=from_result(process_payment, "payment_id"),
        retries=RetryPolicy(max_attempts=3, backoff="linear", initial_delay_secs=10),
    )
    def send_confirmation(self, order: Order, payment_id: str) -> dict[str, bool]:
        if not shop.send_order_confirmation(to=order.customer.email, order=order, payment_id=payment_id):
            raise RuntimeError("Confirmation email failed")
        return {"confirmation_sent": True}


class PartialOrderProcessingReactor(OrderProcessingReactor):
    """Allow partial fulfilment: ship what is in stock and report the rest."""

    def check_inventory(self, order: Order) -> dict[str, Any]:
        available_items, unavailable_items = self.partition_available_items(order.items)
        if available_items and unavailable_items:
            partial_order = self.create_partial_order(order, available_items)
            return {"partial_order": partial_order, "unavailable_items": unavailable_items}
        if not available_items:
            raise RuntimeError("No items available")
        return {"inventory_checked": True}

    def partition_available_items(self, items: list[Item]) -> tuple[list[Item], list[Item]]:
        available = [item for item in items if shop.inventory_count[item.product_id] >= item.quantity]
        return available, [item for item in items if item not in available]

    def create_partial_order(self, order: Order, items: list[Item]) -> Order:
        return order.model_copy(update={"id": f"{order.id}-partial", "items": items})


class OrderCancellationReactor(Saga):
    """Cancel an order; a completed one is refunded and its items restored first."""

    input_schema = OrderArgs

    @step
    def load_order(self, order_id: str) -> dict[str, Order]:
        order = shop.orders.get(order_id)
        if order is None:
            raise RuntimeError("Order not found")
        return {"order": order}

    # The seed's cancel_order declares no argument but reads ``order:``; it is load_order's.
    @step(order=from_result(load_order, "order"))
    def cancel_order(self, order: Order) -> dict[str, bool]:
        if order.is_processed():
            assert order.payment_id is not None
            shop.refund(order.payment_id)
            shop.restore_order_items(order)
        shop.update_order(order.id, status="cancelled")
        return {"cancelled": True}


def run_order(reactor: type[Saga] = OrderProcessingReactor, clock: FakeClock | None = None) -> SagaResult:
    result = reactor.run(order_id="12345", clock=clock or FakeClock())
    assert isinstance(result, SagaResult)
    return result


# -- order ----------------------------------------------------------------------------------------------


def test_each_step_waits_for_the_one_declared_before_it() -> None:
    """The compiled graph is the seed's: every step depends on the step written above it."""
    workflow = OrderProcessingReactor.workflow
    assert workflow.step_names == SEED_ORDER
    assert workflow.step("validate_order").depends_on == ()
    for before, after in itertools.pairwise(SEED_ORDER):
        assert workflow.step(after).depends_on[0] == before, after


def test_a_successful_order_runs_every_step_in_the_seeds_order(fresh_shop: Shop) -> None:
    """RSpec 'completes all steps successfully', and the services are called in the seed's order."""
    result = run_order()
    assert result.success, result.error
    assert result.completed_steps == SEED_ORDER
    assert result.step_results["process_payment"]["payment_id"] == "pay_1"
    assert fresh_shop.calls() == [
        "reserve_items",
        "charge",
        "confirm_reservation",
        "update_order",
        "send_order_confirmation",
    ]
    assert fresh_shop.orders["12345"].status == "completed"


def test_the_asynchronous_form_hands_the_run_to_a_worker_in_the_same_order(fresh_shop: Shop) -> None:
    """``async true``: run() returns a handle at once; a worker runs the steps in the seed's order."""

    class AsyncOrderProcessingReactor(OrderProcessingReactor):
        asynchronous = True

    backend = InMemoryBackend()
    handle = AsyncOrderProcessingReactor.run(order_id="12345", backend=backend, workflow_id="order-12345")
    assert handle.status == "running"
    Worker(backend, [AsyncOrderProcessingReactor.workflow]).run(until_idle=True)
    assert handle.status == "success"
    result = handle.wait(timeout=5)
    assert result.completed_steps == SEED_ORDER
    assert result.step_results["process_payment"]["payment_id"] == "pay_1"


# -- the seed's compensation table ----------------------------------------------------------------------


def test_check_inventory_failing_compensates_nothing(fresh_shop: Shop) -> None:
    """check_inventory fails (after 3 attempts, 2 s then 4 s): nothing was reserved, nothing is undone."""
    fresh_shop.inventory_count[2] = 0
    clock = FakeClock()
    result = run_order(clock=clock)
    assert result.state is RunState.FAILED
    assert result.error is not None
    assert result.error.step_name == "check_inventory"
    assert "Insufficient inventory" in result.error.message
    assert result.error.attempts == 3
    assert clock.sleeps == [2.0, 4.0]
    assert fresh_shop.journal == []
    assert result.completed_steps == ("validate_order",)


def test_process_payment_failing_releases_the_reservation(fresh_shop: Shop) -> None:
    """RSpec 'compensates inventory reservation': 2 attempts 30 s apart, then res_123 alone is released."""
    fresh_shop.payment = PaymentResult(success=False, error="card declined")
    clock = FakeClock()
    result = run_order(clock=clock)
    assert result.state is RunState.COMPENSATED
    assert result.error is not None
    assert result.error.step_name == "process_payment"
    assert "Payment failed" in result.error.message
    assert result.error.attempts == 2
    assert clock.sleeps == [30.0]
    assert fresh_shop.calls() == ["reserve_items", "charge", "charge", "release_reservation"]
    assert fresh_shop.undos() == [("release_reservation", "res_123")]
    assert result.status.step("update_inventory").state is StepState.PENDING


def test_send_confirmation_failing_refunds_and_restores_the_inventory(fresh_shop: Shop) -> None:
    """send_confirmation fails (3 attempts, 10 s then 20 s): the payment is refunded and the inventory
    restored; every undo runs, newest step first, so the stock is restored before the refund."""
    fresh_shop.email_succeeds = False
    clock = FakeClock()
    result = run_order(clock=clock)
    assert result.state is RunState.COMPENSATED
    assert result.error is not None
    assert result.error.step_name == "send_confirmation"
    assert result.error.attempts == 3
    assert clock.sleeps == [10.0, 20.0]
    assert fresh_shop.undos() == [
        ("restore_from_reservation", "res_123"),
        ("refund", "pay_1"),
        ("release_reservation", "res_123"),
    ]
    assert result.completed_steps == ("validate_order", "check_inventory", "update_order_status")


# -- PartialOrderProcessingReactor ------------------------------------------------------------------------


def test_the_partial_subclass_keeps_every_step_in_its_place(fresh_shop: Shop) -> None:
    """Overriding check_inventory keeps its position, arguments, retries and the other steps' undos."""
    workflow = PartialOrderProcessingReactor.workflow
    assert workflow.step_names == SEED_ORDER
    assert workflow.step("reserve_inventory").depends_on[0] == "check_inventory"
    assert workflow.step("check_inventory").retries.max_attempts == 3
    fresh_shop.inventory_count[2] = 0
    result = run_order(PartialOrderProcessingReactor)
    assert result.success, result.error
    assert result.completed_steps == SEED_ORDER
    check = result.step_results["check_inventory"]
    assert check["partial_order"]["id"] == "12345-partial"
    assert check["unavailable_items"] == [{"product_id": 2, "quantity": 1}]


def test_the_partial_subclass_with_nothing_in_stock_compensates_nothing(fresh_shop: Shop) -> None:
    """'No items available' fails check_inventory before anything is reserved."""
    fresh_shop.inventory_count.update({1: 0, 2: 0})
    result = run_order(PartialOrderProcessingReactor)
    assert result.state is RunState.FAILED
    assert result.error is not None
    assert result.error.message == "No items available"
    assert fresh_shop.journal == []


# -- OrderCancellationReactor ----------------------------------------------------------------------------


def test_cancelling_a_completed_order_refunds_restores_then_cancels(fresh_shop: Shop) -> None:
    """load_order, then cancel_order: refund, restore the items, mark the order cancelled."""
    fresh_shop.orders["12345"] = fresh_shop.orders["12345"].model_copy(
        update={"status": "completed", "payment_id": "pay_9"}
    )
    result = OrderCancellationReactor.run(order_id="12345")
    assert result.success, result.error
    assert result.completed_steps == ("load_order", "cancel_order")
    assert fresh_shop.journal == [
        ("refund", "pay_9"),
        ("restore_order_items", "12345"),
        ("update_order", {"status": "cancelled"}),
    ]
