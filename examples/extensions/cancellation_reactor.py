"""Seed 000's ``OrderCancellationReactor``, as a conveyor workflow class.

The RubyReactor original::

    class OrderCancellationReactor < RubyReactor::Reactor
      step :load_order do
        validate_args do required(:order_id).filled(:string) end
        run do |order_id:| ... Success({ order: order }) end
      end
      step :cancel_order do
        run do |order:, **|
          if order.completed?
            PaymentService.refund(order.payment_id)
            InventoryService.restore_order_items(order)
          end
          order.update!(status: :cancelled)
          Success({ cancelled: true })
        end
      end
    end

Here, step for step: ``input_schema`` is ``validate_args``; ``load_order``'s result feeds ``cancel_order``
(``from_result``); the services are the runtime's resources, not globals; the refund carries the step's
idempotency key, so a retried ``cancel_order`` (a crash after the refund) refunds once. The order store
refuses to cancel an order twice, so running the reactor again for the same order fails at once.

In a real application, prefer cancelling the order's own run: ``cancel_workflow`` undoes what the run did
while it is in flight, and ``compensate_workflow`` undoes a completed one (the order application in
``examples/orders`` does both). This reactor is for orders whose run is gone or was never conveyor's.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field

from conveyor import (
    Backend,
    Conveyor,
    InMemoryBackend,
    NonRetryableError,
    Saga,
    StepContext,
    from_result,
    resource,
    step,
)


@dataclass
class Store:
    """Orders, a payment service and the shelf, in memory (the seed's ``Order``, ``PaymentService`` and
    ``InventoryService``)."""

    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    shelf: dict[str, int] = field(default_factory=dict)
    refunds: dict[str, str] = field(default_factory=dict)
    """Idempotency key -> payment id refunded (the payment service refunds once per key)."""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def refund(self, payment_id: str, idempotency_key: str) -> None:
        """``PaymentService.refund``."""
        with self.lock:
            self.refunds.setdefault(idempotency_key, payment_id)

    def restore_order_items(self, order: dict[str, Any]) -> None:
        """``InventoryService.restore_order_items``: put the order's units back (once per order)."""
        with self.lock:
            if self.orders[order["id"]].get("restocked"):
                return
            for sku, quantity in order["items"].items():
                self.shelf[sku] = self.shelf.get(sku, 0) + quantity
            self.orders[order["id"]]["restocked"] = True

    def mark_cancelled(self, order_id: str) -> None:
        """``order.update!(status: :cancelled)``."""
        with self.lock:
            self.orders[order_id]["status"] = "cancelled"


class CancellationInput(BaseModel):
    """``validate_args do required(:order_id).filled(:string) end``."""

    order_id: str = Field(min_length=1)


class OrderCancellation(Saga):
    """Load an order, then cancel it: refund and restock it first if it was completed."""

    input_schema = CancellationInput

    @step
    def load_order(self, order_id: str, store: Store = resource("store")) -> dict[str, Any]:
        """The order must exist (and not be cancelled already)."""
        order = store.orders.get(order_id)
        if order is None:
            raise NonRetryableError("Order not found")
        if order["status"] == "cancelled":
            raise NonRetryableError("Order already cancelled")
        return {"order": order}

    @step(order=from_result(load_order, "order"))
    def cancel_order(
        self, order: dict[str, Any], context: StepContext, store: Store = resource("store")
    ) -> dict[str, Any]:
        """Refund and restock a completed order; then mark it cancelled."""
        if order["status"] == "completed":
            store.refund(order["payment_id"], context.idempotency_key)
            store.restore_order_items(order)
        store.mark_cancelled(order["id"])
        return {"cancelled": True}


def main(backend: Backend | None = None) -> int:
    """Cancel a completed order (refunded, restocked) and a pending one; then an unknown one (refused)."""
    store = Store(
        orders={
            "12345": {"id": "12345", "status": "completed", "payment_id": "pay_1", "items": {"mug": 2}},
            "12346": {"id": "12346", "status": "pending", "payment_id": None, "items": {"mug": 1}},
        },
        shelf={"mug": 8},
    )
    with Conveyor(backend or InMemoryBackend(), workflows=[OrderCancellation]) as app:
        app.resources.add("store", store)
        completed = OrderCancellation.run(order_id="12345", runtime=app)
        pending = OrderCancellation.run(order_id="12346", runtime=app)
        unknown = OrderCancellation.run(order_id="99999", runtime=app)
    print(f"12345: success={completed.success}, steps: {list(completed.completed_steps)}")
    print(f"12346: success={pending.success}; refunds: {list(store.refunds.values())}; shelf: {store.shelf}")
    assert unknown.error is not None
    print(f"99999: failed at {unknown.error.step_name}: {unknown.error.message}")
    statuses = {order_id: order["status"] for order_id, order in store.orders.items()}
    print(f"orders: {statuses}")
    ok = completed.success and pending.success and not unknown.success
    return 0 if ok and store.shelf == {"mug": 10} and list(store.refunds.values()) == ["pay_1"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
