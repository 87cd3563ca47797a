"""The seeds' own workflows on the order domain: seed 000's reactors, seed 003's tutorial, seed 002's YAML."""

from __future__ import annotations

import random
import time
from typing import Any

import pytest
from examples.orders import services
from examples.orders.adapters.db import Database
from examples.orders.domain import OrderStatus
from examples.orders.relay import OutboxRelay
from examples.orders.sagas import OrderProcessing, PartialOrderProcessing
from examples.orders.system import OrderSystem
from examples.orders.workflows import app, checkout, shop_runtime, tutorial_order
from orders_support import order_request, run_here, run_saga

from conveyor import (
    FakeClock,
    InMemoryBackend,
    InvalidInputError,
    RunState,
    SqliteBackend,
    run_durable_workflow,
)

SEED_000_STEPS = (
    "validate_order",
    "check_inventory",
    "reserve_inventory",
    "process_payment",
    "update_inventory",
    "ship_order",
    "update_order_status",
    "send_confirmation",
)


def place(system: OrderSystem, *items: tuple[str, int], card: str = "tok_visa", partial: bool = False) -> str:
    """Place an order; its id."""
    request = order_request(*items, card=card)
    if partial:
        request = services.OrderRequest(
            request.customer_email,
            request.card_token,
            request.shipping_address,
            request.items,
            allow_partial=True,
        )
    return services.place_order(system, request).order_id


def shelf(system: OrderSystem) -> dict[str, int]:
    """Units available per SKU."""
    with system.db.transaction(readonly=True) as tx:
        return system.inventory.available(tx)


def test_order_processing_completes_every_step(shop: OrderSystem) -> None:
    """Seed 000's success spec: the result is a success and send_confirmation completed."""
    order_id = place(shop, ("mug", 1))
    result = run_saga(shop, OrderProcessing, order_id)
    assert result.success
    assert result.completed_steps == SEED_000_STEPS
    assert result.step_results["process_payment"]["payment_amount"] == 1_250
    assert result.step_results["send_confirmation"] == {"confirmation_sent": True}
    assert services.get_order(shop, order_id).status is OrderStatus.COMPLETED
    assert shop.mailer.delivered(f"order_confirmation:{order_id}") == 1


def test_a_failed_payment_releases_the_reservation(shop: OrderSystem) -> None:
    """Seed 000's payment-failure spec: a failure naming the payment, and the reservation released."""
    order_id = place(shop, ("kettle", 3), card="tok_chargeDeclined")
    result = run_saga(shop, OrderProcessing, order_id)
    assert not result.success
    assert result.error is not None
    assert result.error.step_name == "process_payment"
    assert "Payment failed" in result.error.message
    assert result.status.step("reserve_inventory").state.value == "compensated"
    assert shelf(shop)["kettle"] == 50
    assert services.get_order(shop, order_id).status is OrderStatus.FAILED


def test_missing_stock_fails_at_check_inventory_with_nothing_to_undo_but_the_order(shop: OrderSystem) -> None:
    """The seed's first failure case: no stock was touched, and the order ends failed."""
    order_id = place(shop, ("matcha", 5))
    result = run_saga(shop, OrderProcessing, order_id)
    assert result.error is not None
    assert result.error.step_name == "check_inventory"
    assert "Insufficient inventory" in result.error.message
    assert shelf(shop)["matcha"] == 2
    assert services.get_order(shop, order_id).status is OrderStatus.FAILED


def test_a_failing_email_server_never_refunds_a_completed_order(shop: OrderSystem) -> None:
    """The seed's flaw, removed: the email fails, the order stays paid and complete; the relay sends it."""
    shop.mailer.failure_rate = 1.0
    order_id = place(shop, ("mug", 1))
    result = run_saga(shop, OrderProcessing, order_id)
    assert result.success
    assert result.step_results["send_confirmation"] == {"confirmation_sent": False}
    assert services.get_order(shop, order_id).status is OrderStatus.COMPLETED
    assert sum(charge.refundable_cents for charge in shop.gateway.charges_for(order_id)) == 1_250
    shop.mailer.failure_rate = 0.0
    assert OutboxRelay(shop).deliver_due(now=time.time() + 60) == 1  # a minute later
    assert shop.mailer.delivered(f"order_confirmation:{order_id}") == 1


def test_the_partial_subclass_ships_what_is_on_the_shelf(shop: OrderSystem) -> None:
    """Seed 000's subclass: the unavailable line is dropped and only the kept line is charged and taken."""
    order_id = place(shop, ("mug", 2), ("matcha", 5), partial=True)
    result = run_saga(shop, PartialOrderProcessing, order_id)
    assert result.success
    assert result.step_results["check_inventory"]["unavailable_items"] == ["matcha"]
    assert result.step_results["process_payment"]["payment_amount"] == 2_500
    order = services.get_order(shop, order_id)
    assert [(line.sku, line.dropped) for line in order.lines] == [("mug", False), ("matcha", True)]
    assert order.total_cents == 2_500
    assert shelf(shop) == {"kettle": 50, "matcha": 2, "mug": 48}


def test_the_partial_subclass_fails_when_nothing_is_available(shop: OrderSystem) -> None:
    """With no line on the shelf the partial order fails at check_inventory, charging nothing."""
    order_id = place(shop, ("matcha", 5), partial=True)
    result = run_saga(shop, PartialOrderProcessing, order_id)
    assert result.error is not None
    assert result.error.step_name == "check_inventory"
    assert "none of its items is available" in result.error.message
    assert shop.gateway.charges_for(order_id) == []


def test_a_partial_order_cancelled_during_its_payment_is_refunded_and_ends_cancelled(
    shop: OrderSystem,
) -> None:
    """cancel_workflow while the saga charges: the charge is recorded, then every step is undone."""
    order_id = place(shop, ("mug", 1), partial=True)
    workflow_id = f"order-{order_id}"
    with shop_runtime(InMemoryBackend(), system=shop, clock=FakeClock()) as runtime:
        charge = shop.gateway.charge

        def cancel_then_charge(**kwargs: Any) -> Any:
            runtime.cancel(workflow_id, "changed my mind")
            return charge(**kwargs)

        shop.gateway.charge = cancel_then_charge  # type: ignore[method-assign]
        try:
            status = runtime.run(PartialOrderProcessing, {"order_id": order_id}, workflow_id=workflow_id)
        finally:
            shop.gateway.charge = charge  # type: ignore[method-assign]
    assert status.is_cancelled()
    assert status.step("validate_order").state.value == "compensated"
    assert status.step("update_inventory").state.value == "pending"
    order = services.get_order(shop, order_id)
    assert order.status is OrderStatus.CANCELLED
    assert order.cancel_reason == "changed my mind"
    assert sum(charge.refundable_cents for charge in shop.gateway.charges_for(order_id)) == 0


def test_order_processing_refuses_an_empty_order_id_before_anything_runs(shop: OrderSystem) -> None:
    """validate_args: ``order_id`` must be a filled string; the error names the field."""
    with pytest.raises(InvalidInputError) as refused:
        OrderProcessing.run(order_id="")
    assert refused.value.context["fields"] == ["order_id"]


TUTORIAL_ORDER = {
    "order_id": "1001",
    "customer_email": "alice@example.com",
    "sku": "kettle",
    "quantity": 1,
    "amount_cents": 3_499,
    "card_token": "tok_visa",
}


def test_the_tutorial_flow_charges_and_checks_stock_in_parallel(
    shop: OrderSystem, backend: SqliteBackend
) -> None:
    """Seed 003's order-v2 flow completes with the tutorial's output."""
    status = run_here(shop, backend, tutorial_order, "order-1001", TUTORIAL_ORDER)
    assert status.output() == "Order complete: paid=True, stock=True"
    [charge] = shop.gateway.charges_for("tutorial-1001")
    assert charge.amount_cents == 3_499


def test_the_tutorial_flow_refunds_the_charge_when_the_item_is_out_of_stock(
    shop: OrderSystem, backend: SqliteBackend
) -> None:
    """The parallel charge is undone when finalize finds the item out of stock."""
    order = {**TUTORIAL_ORDER, "sku": "matcha", "quantity": 3, "order_id": "1002"}
    status = run_here(shop, backend, tutorial_order, "order-1002", order)
    assert status.state is RunState.COMPENSATED
    assert status.step("charge_payment").state.value == "compensated"
    [charge] = shop.gateway.charges_for("tutorial-1002")
    assert charge.refundable_cents == 0


CART = {
    "cart_items": [{"sku": "kettle", "quantity": 1}, {"sku": "mug", "quantity": 2}],
    "payment_info": {"token": "tok_visa"},
    "customer_info": {"email": "sarah@example.com", "name": "Sarah", "address": "1 Growth Way"},
}


def test_the_yaml_checkout_charges_with_tax_takes_stock_and_records_the_order(
    shop: OrderSystem, backend: SqliteBackend
) -> None:
    """Seed 002's checkout: 8 % tax in cents, the order awaiting shipment, its confirmation queued."""
    status = run_here(shop, backend, checkout, "cart-1", CART)
    assert status.state is RunState.COMPLETED
    totals = status.output()["validate_cart"]
    assert (totals["subtotal_cents"], totals["tax_cents"], totals["total_cents"]) == (5_999, 480, 6_479)
    order = services.get_order(shop, "cart-1")
    assert order.status is OrderStatus.AWAITING_SHIPMENT
    assert order.total_cents == 6_479
    assert shop.gateway.get_charge(status.output()["process_payment"]["payment_id"]).amount_cents == 6_479
    assert shelf(shop) == {"kettle": 49, "matcha": 2, "mug": 48}
    assert shop.outbox.pending() == 1


class SoldOutDuringPayment(random.Random):
    """A random source that, when the gateway first asks it, lets another customer buy the last matcha."""

    def __init__(self, url: str) -> None:
        super().__init__(0)
        self.url = url
        self.fired = False

    def random(self) -> float:
        """Empty the matcha shelf (once), then let the request through."""
        if not self.fired:
            self.fired = True
            with Database(self.url) as db, db.transaction() as tx:
                tx.execute("UPDATE stock SET available = 0 WHERE sku = 'matcha'")
        return 0.999


def test_the_yaml_checkout_refunds_when_the_stock_runs_out_after_payment(
    shop: OrderSystem, backend: SqliteBackend, sqlite_url: str
) -> None:
    """Tasker's "payment succeeds, inventory update fails": the charge is refunded and no order is left."""
    cart = {**CART, "cart_items": [{"sku": "matcha", "quantity": 2}]}
    racing = OrderSystem(shop.db, shop.faults, SoldOutDuringPayment(sqlite_url))
    status = run_here(racing, backend, checkout, "cart-2", cart)
    assert status.state is RunState.COMPENSATED
    error = status.error()
    assert error is not None
    assert error.step_name == "update_inventory"
    assert "out of stock: matcha has 0 available, 2 wanted" in error.message
    [charge] = shop.gateway.charges_for("cart-2")
    assert charge.refunded_cents == charge.amount_cents == 6_478
    with shop.db.transaction(readonly=True) as tx:
        assert shop.orders.find(tx, "cart-2") is None
        assert shop.inventory.reservation_of(tx, "cart-2") is None


def test_the_yaml_checkout_names_the_bad_field(shop: OrderSystem, backend: SqliteBackend) -> None:
    """An input that breaks the template's schema is refused before anything runs, naming the field."""
    cart = {**CART, "cart_items": [{"sku": "kettle", "quantity": 0}]}
    with pytest.raises(InvalidInputError) as refused:
        run_durable_workflow(checkout, "cart-3", cart, backend)
    assert refused.value.context["fields"] == ["cart_items.0.quantity"]
    assert shop.gateway.charges_for("cart-3") == []


def test_the_shop_runtime_registers_its_workflows() -> None:
    """All five are registered with the shop's runtime by name."""
    names = sorted(workflow.name for workflow in app.workflows())
    assert names == [
        "order_fulfilment",
        "orders.OrderProcessing",
        "orders.PartialOrderProcessing",
        "orders.process_order",
        "orders.tutorial",
    ]
