"""Seed 003's first extension: send a notification to the warehouse system after payment.

::

    validate_order ─► charge_payment ─► notify_warehouse ─► send_confirmation

``notify_warehouse`` runs only once the charge is checkpointed, so a declined card never reaches the
warehouse. The warehouse system is flaky: the step is retried with backoff, and it passes its idempotency
key, the same on every attempt, so the warehouse (which keeps one request per key) is asked to pick the
order once however many attempts it takes. If the warehouse stayed down past the retries, the charge
would be refunded (``charge_payment``'s undo) and the run would end ``compensated``.
"""

from __future__ import annotations

from typing import Any

from conveyor import Backend, Conveyor, Flow, InMemoryBackend, RetryPolicy, StepContext, resource, task
from examples.extensions.shop import ORDER, Shop, charge_payment, send_confirmation, validate_order


@task(retries=RetryPolicy(max_retries=5, initial_delay_secs=0.01, backoff_multiplier=2.0))
def notify_warehouse(
    order: dict[str, Any], context: StepContext, shop: Shop = resource("shop")
) -> dict[str, Any]:
    """Ask the warehouse to pick the paid order; once per order, however often the call is retried."""
    shop.notify_warehouse(
        context.idempotency_key, {"order_id": order["order_id"], "product_id": order["product_id"]}
    )
    return {**order, "warehouse_notified": True}


order_with_warehouse = (
    Flow("order-with-warehouse")
    .then(validate_order)
    .then(charge_payment)
    .then(notify_warehouse)
    .then(send_confirmation)
    .build()
)


def main(backend: Backend | None = None) -> int:
    """Run two orders: one paid (the warehouse is down twice, then told once), one declined (never told)."""
    shop = Shop(warehouse_outages=2)
    with Conveyor(backend or InMemoryBackend(), workflows=[order_with_warehouse]) as app:
        app.resources.add("shop", shop)
        paid = app.run(order_with_warehouse, ORDER, workflow_id="order-1001")
        declined = app.run(
            order_with_warehouse, {**ORDER, "order_id": 1002, "card": "declined"}, workflow_id="order-1002"
        )
    print(f"order-1001: {paid.state.value}: {paid.output()}")
    print(f"  notify_warehouse took {paid.step('notify_warehouse').attempts} attempts")
    print(f"  warehouse pick requests: {list(shop.warehouse.values())}")
    print(f"order-1002: {declined.state.value}: {declined.error()}")
    return 0 if paid.is_completed() and declined.is_failed() and len(shop.warehouse) == 1 else 1


if __name__ == "__main__":
    raise SystemExit(main())
