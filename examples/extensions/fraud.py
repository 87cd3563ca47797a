"""Seed 003's second extension: fraud detection as a parallel branch.

::

    validate_order ─► fork ─┬─ charge_payment ──┬─► finalize
                            ├─ check_inventory ─┤
                            └─ detect_fraud ────┘

The three branches run at once; ``finalize`` gets ``{"charge_payment": ..., "check_inventory": ...,
"detect_fraud": ...}``. An order that scores as fraud is refused by ``finalize``: the charge the other
branch made is refunded (its undo), and the run ends ``compensated`` with ``finalize``'s error. The
check is a rule, as a sketch: a real one would call a scoring service (and could be retried like any
step).
"""

from __future__ import annotations

from typing import Any

from conveyor import Backend, Conveyor, Flow, InMemoryBackend, NonRetryableError, resource, task
from examples.extensions.shop import ORDER, Shop, charge_payment, validate_order

FRAUD_THRESHOLD = 0.8


@task
def check_inventory(order: dict[str, Any], shop: Shop = resource("shop")) -> dict[str, Any]:
    """Verify the item is in stock (the tutorial's task)."""
    return {**order, "in_stock": shop.stock.get(order["product_id"], 0) > 0}


@task
def detect_fraud(order: dict[str, Any]) -> dict[str, Any]:
    """Score the order: a large amount from a throwaway address scores high."""
    score = 0.0
    if order["amount"] > 1_000:
        score += 0.5
    if order["customer_email"].endswith("@mailinator.com"):
        score += 0.4
    return {"fraud_score": round(score, 2), "suspicious": score >= FRAUD_THRESHOLD}


@task
def finalize(results: dict[str, Any]) -> str:
    """Combine the branches; refuse an order that scored as fraud or is out of stock."""
    payment, inventory, fraud = results["charge_payment"], results["check_inventory"], results["detect_fraud"]
    if fraud["suspicious"]:
        raise NonRetryableError(f"fraud suspected (score {fraud['fraud_score']}); the charge is refunded")
    if not inventory["in_stock"]:
        raise NonRetryableError("out of stock; the charge is refunded")
    paid, stock, score = payment["charged"], inventory["in_stock"], fraud["fraud_score"]
    return f"Order complete: paid={paid}, stock={stock}, fraud score={score}"


order_with_fraud_check = (
    Flow("order-with-fraud-check")
    .then(validate_order)
    .fork()
    .branch(charge_payment)
    .branch(check_inventory)
    .branch(detect_fraud)
    .join(finalize)
    .build()
)


def main(backend: Backend | None = None) -> int:
    """Run an honest order (completed) and a suspicious one (refused, its charge refunded)."""
    shop = Shop()
    suspicious = {**ORDER, "order_id": 1002, "amount": 4_999.0, "customer_email": "x@mailinator.com"}
    with Conveyor(backend or InMemoryBackend(), workflows=[order_with_fraud_check]) as app:
        app.resources.add("shop", shop)
        honest = app.run(order_with_fraud_check, ORDER, workflow_id="order-1001")
        refused = app.run(order_with_fraud_check, suspicious, workflow_id="order-1002")
    print(f"order-1001: {honest.state.value}: {honest.output()}")
    print(f"order-1002: {refused.state.value}: {refused.error()}")
    print(f"  refunded: {shop.refunds}; still charged: {shop.net_charged:.2f}")
    return 0 if honest.is_completed() and refused.is_failed() and len(shop.refunds) == 1 else 1


if __name__ == "__main__":
    raise SystemExit(main())
