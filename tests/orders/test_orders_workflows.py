"""The order workflow (Flow builder): the happy path, and every way it fails and undoes itself."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from examples.orders import services
from examples.orders.domain import OrderStatus
from examples.orders.system import Faults, OrderSystem
from examples.orders.workflows import order_fulfilment, shop_runtime
from orders_support import ScriptedRandom, make_system, order_request, run_here

from conveyor import FakeClock, RunState, SqliteBackend, WorkflowStatus


def place(
    system: OrderSystem, *items: tuple[str, int], card: str = "tok_visa", address: str = "1 Tea St"
) -> str:
    """Place an order for ``items``; its id."""
    return services.place_order(system, order_request(*items, card=card, address=address)).order_id


def run(system: OrderSystem, backend: SqliteBackend, order_id: str) -> WorkflowStatus:
    """Run the order's workflow to its end in this process (retry delays pass at once)."""
    workflow_id = services.workflow_id_for(order_id)
    return run_here(system, backend, order_fulfilment, workflow_id, {"order_id": order_id})


def net_charged(system: OrderSystem, order_id: str) -> int:
    """Cents captured minus refunded for the order."""
    return sum(charge.refundable_cents for charge in system.gateway.charges_for(order_id))


def shelf(system: OrderSystem) -> dict[str, int]:
    """Units available per SKU."""
    with system.db.transaction(readonly=True) as tx:
        return system.inventory.available(tx)


@pytest.fixture
def faulty_shop(sqlite_url: str) -> Iterator[OrderSystem]:
    """A shop whose gateway fails when the test's script says (``faulty_shop.rng.values``)."""
    faults = Faults(gateway_transient_rate=0.5, gateway_lost_response_rate=0.5)
    system = make_system(sqlite_url, faults, ScriptedRandom())
    yield system
    system.close()


def test_an_order_is_reserved_charged_shipped_completed_and_its_email_queued(
    shop: OrderSystem, backend: SqliteBackend
) -> None:
    """Every step completes; the charge carries the step's idempotency key; one email waits in the outbox."""
    order_id = place(shop, ("mug", 2), ("kettle", 1))
    status = run(shop, backend, order_id)
    assert status.state is RunState.COMPLETED
    order = services.get_order(shop, order_id)
    assert order.status is OrderStatus.COMPLETED
    assert net_charged(shop, order_id) == 2 * 1_250 + 3_499
    assert shelf(shop) == {"kettle": 49, "matcha": 2, "mug": 48}
    with shop.db.transaction(readonly=True) as tx:
        assert tx.one("SELECT idempotency_key FROM gateway_charges") == (f"order-{order_id}:charge_payment",)
        assert tx.all("SELECT kind, recipient FROM outbox") == [("order_confirmation", "ada@example.com")]
    history = [after for _, after, _ in services.status_history(shop, order_id)[0]]
    assert history == ["created", "payment_pending", "awaiting_shipment", "shipped", "completed"]


def test_a_declined_card_releases_the_stock_and_fails_the_order(
    shop: OrderSystem, backend: SqliteBackend
) -> None:
    """The payment fails for good: the reservation is undone, the order ends failed, saying why."""
    order_id = place(shop, ("mug", 2), card="tok_chargeDeclined")
    status = run(shop, backend, order_id)
    assert status.state is RunState.COMPENSATED
    error = status.error()
    assert error is not None
    assert error.step_name == "charge_payment"
    assert error.attempts == 1
    assert [step.state.value for step in status.steps] == [
        "compensated",
        "compensated",
        "failed",
        "pending",
        "pending",
    ]
    order = services.get_order(shop, order_id)
    assert order.status is OrderStatus.FAILED
    assert order.failure_reason is not None
    assert "Payment failed: card declined (generic_decline)" in order.failure_reason
    assert shelf(shop)["mug"] == 50
    assert net_charged(shop, order_id) == 0


def test_an_order_out_of_stock_fails_without_a_charge(shop: OrderSystem, backend: SqliteBackend) -> None:
    """The reservation is refused by the database; nothing was charged and nothing is held."""
    order_id = place(shop, ("mug", 1), ("matcha", 3))
    status = run(shop, backend, order_id)
    assert status.state is RunState.COMPENSATED
    assert status.step("reserve_stock").error is not None
    order = services.get_order(shop, order_id)
    assert order.status is OrderStatus.FAILED
    assert order.failure_reason == "out of stock: matcha has 2 available, 3 wanted"
    assert shop.gateway.charges_for(order_id) == []
    assert shelf(shop) == {"kettle": 50, "matcha": 2, "mug": 50}


def test_a_refused_address_after_payment_refunds_and_restocks(
    shop: OrderSystem, backend: SqliteBackend
) -> None:
    """Shipping fails once the card was charged: the charge is refunded and the units go back."""
    order_id = place(shop, ("kettle", 2), address="9 Undeliverable Road")
    status = run(shop, backend, order_id)
    assert status.state is RunState.COMPENSATED
    assert status.step("charge_payment").state.value == "compensated"
    [charge] = shop.gateway.charges_for(order_id)
    assert charge.refunded_cents == charge.amount_cents == 6_998
    assert shelf(shop)["kettle"] == 50
    assert services.get_order(shop, order_id).status is OrderStatus.FAILED


def test_a_503_and_a_lost_response_are_retried_into_one_charge(
    faulty_shop: OrderSystem, backend: SqliteBackend
) -> None:
    """The first attempt gets a 503, the second charges but loses the answer, the third finds the charge."""
    assert isinstance(faulty_shop.rng, ScriptedRandom)
    faulty_shop.rng.values = [0.0, 0.9, 0.0, 0.9]  # 503; then charged but lost; then answered
    order_id = place(faulty_shop, ("mug", 1))
    status = run(faulty_shop, backend, order_id)
    assert status.state is RunState.COMPLETED
    assert status.step("charge_payment").attempts == 3
    assert len(faulty_shop.gateway.charges_for(order_id)) == 1
    assert net_charged(faulty_shop, order_id) == 1_250


def test_a_charge_whose_every_answer_was_lost_is_refunded_when_the_order_fails(
    faulty_shop: OrderSystem, backend: SqliteBackend
) -> None:
    """The charge went through but no attempt learnt it: the order fails, and settling it refunds it."""
    assert isinstance(faulty_shop.rng, ScriptedRandom)
    faulty_shop.rng.values = [0.9, 0.0] + [0.0] * 7  # charged but lost; then 503 until retries run out
    order_id = place(faulty_shop, ("mug", 1))
    status = run(faulty_shop, backend, order_id)
    assert status.state is RunState.COMPENSATED
    assert status.step("charge_payment").attempts == 8
    [charge] = faulty_shop.gateway.charges_for(order_id)
    assert charge.refunded_cents == charge.amount_cents == 1_250
    assert services.get_order(faulty_shop, order_id).status is OrderStatus.FAILED
    assert shelf(faulty_shop)["mug"] == 50


REASON = services.CUSTOMER_CANCELLED


def cancel_while(
    system: OrderSystem, backend: SqliteBackend, order_id: str, target: Any, method: str
) -> WorkflowStatus:
    """Run the order's workflow, cancelling its run through the runtime while ``target.method`` runs."""
    workflow_id = services.workflow_id_for(order_id)
    with shop_runtime(backend, system=system, clock=FakeClock()) as runtime:
        original = getattr(target, method)

        def cancel_then_go_on(*args: Any, **kwargs: Any) -> Any:
            runtime.cancel(workflow_id, REASON)  # the step is told; it finishes anyway and is recorded
            return original(*args, **kwargs)

        setattr(target, method, cancel_then_go_on)
        try:
            return runtime.run(order_fulfilment, {"order_id": order_id}, workflow_id=workflow_id)
        finally:
            setattr(target, method, original)


def test_an_order_cancelled_before_its_run_starts_ends_cancelled_with_nothing_charged(
    shop: OrderSystem, backend: SqliteBackend
) -> None:
    """The API's way: the created order is cancelled, then its run (cancel_workflow): nothing to undo."""
    order_id = place(shop, ("mug", 1))
    workflow_id = services.workflow_id_for(order_id)
    with shop_runtime(backend, system=shop, clock=FakeClock()) as runtime:
        runtime.start(order_fulfilment, {"order_id": order_id}, workflow_id=workflow_id)
        assert services.cancel_unstarted_order(shop, order_id, REASON)
        status = runtime.cancel(workflow_id, REASON)
    assert status.state is RunState.CANCELLED
    assert status.cancel_reason == REASON
    order = services.get_order(shop, order_id)
    assert order.status is OrderStatus.CANCELLED
    assert order.cancel_reason == REASON
    assert shop.gateway.charges_for(order_id) == []
    assert shelf(shop)["mug"] == 50


def test_cancelling_an_unstarted_order_that_a_worker_moved_meanwhile_says_it_did_not(
    shop: OrderSystem, backend: SqliteBackend
) -> None:
    """The API read the order created; a worker moved it on before the cancel's write: the cancel says it
    did not cancel it (the run's own cancel then undoes what was done), instead of raising (a 500 from the
    API, seen under load in the 300-order run)."""
    order_id = place(shop, ("mug", 1))
    stale = services.get_order(shop, order_id)
    with shop.db.transaction() as tx:
        moved = shop.orders.get(tx, order_id)
        shop.orders.save_status(tx, moved, moved.move_to(OrderStatus.PAYMENT_PENDING))
    shop.orders.get = lambda tx, wanted: stale  # type: ignore[method-assign]  # as read before the move
    assert services.cancel_unstarted_order(shop, order_id, REASON) is False
    del shop.orders.get
    assert services.get_order(shop, order_id).status is OrderStatus.PAYMENT_PENDING


def test_an_order_cancelled_while_it_is_charged_is_refunded_restocked_and_cancelled(
    shop: OrderSystem, backend: SqliteBackend
) -> None:
    """cancel_workflow during the charge: the charge is recorded, then refunded; the order ends cancelled."""
    order_id = place(shop, ("kettle", 1))
    status = cancel_while(shop, backend, order_id, shop.gateway, "charge")
    assert status.state is RunState.CANCELLED
    assert status.error() is not None
    assert status.error().message == REASON
    assert [step.state.value for step in status.steps] == [
        "compensated",  # accept_order: settled last, the order cancelled
        "compensated",  # reserve_stock: released
        "compensated",  # charge_payment: refunded
        "pending",  # ship_order and complete_order never started
        "pending",
    ]
    order = services.get_order(shop, order_id)
    assert order.status is OrderStatus.CANCELLED
    assert order.cancel_reason == REASON
    assert net_charged(shop, order_id) == 0
    assert shelf(shop)["kettle"] == 50


def test_an_order_cancelled_as_it_ships_has_its_label_cancelled_and_ends_cancelled(
    shop: OrderSystem, backend: SqliteBackend
) -> None:
    """A cancel that arrives while the carrier books: the order ships, then every step is undone."""
    order_id = place(shop, ("kettle", 1))
    status = cancel_while(shop, backend, order_id, shop.carrier, "create_shipment")
    assert status.state is RunState.CANCELLED
    assert services.get_order(shop, order_id).status is OrderStatus.CANCELLED  # shipped, then cancelled
    label = shop.carrier.shipment_of(order_id)
    assert label is not None
    assert label[1] == "cancelled"
    assert net_charged(shop, order_id) == 0
    assert shelf(shop)["kettle"] == 50


def test_a_completed_order_undone_through_the_runtime_is_refunded_and_restocked(
    shop: OrderSystem, backend: SqliteBackend
) -> None:
    """Seed 000's cancellation of a completed order is compensate_workflow on its run: the undos run."""
    order_id = place(shop, ("kettle", 1), ("mug", 1))
    assert run(shop, backend, order_id).is_completed()
    with shop_runtime(backend, system=shop, clock=FakeClock()) as runtime:
        status = runtime.compensate(services.workflow_id_for(order_id), REASON)
    assert status.state is RunState.CANCELLED
    order = services.get_order(shop, order_id)
    assert order.status is OrderStatus.CANCELLED
    assert order.cancel_reason == REASON
    assert net_charged(shop, order_id) == 0
    assert shelf(shop) == {"kettle": 50, "matcha": 2, "mug": 50}


def test_running_an_order_again_repeats_nothing(shop: OrderSystem, backend: SqliteBackend) -> None:
    """The same workflow id returns the finished run: no second charge, no second reservation."""
    order_id = place(shop, ("mug", 1))
    first = run(shop, backend, order_id)
    again = run(shop, backend, order_id)
    assert again.state is first.state is RunState.COMPLETED
    assert len(shop.gateway.charges_for(order_id)) == 1
    assert shelf(shop)["mug"] == 49
