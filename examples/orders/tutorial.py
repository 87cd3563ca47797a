"""Seed 003's tutorial flow (Sayiir), on this application: validate, then charge and check stock at once.

::

    validate_order ─► fork ─┬─ charge_payment ──┬─► finalize
                            └─ check_inventory ─┘

The tutorial's tasks, with real work behind them: ``charge_payment`` charges the simulated gateway with the
step's idempotency key (amounts in cents, not the tutorial's float dollars), ``check_inventory`` reads the
shelf, and ``finalize`` refuses an order whose item is out of stock, which refunds the charge made in the
other branch (``charge_payment``'s undo). The input is the tutorial's dict, whose ``card_token`` must be a
card token (:class:`TutorialOrder` refuses a card number before the run is recorded)::

    {"order_id": "1001", "customer_email": "alice@example.com", "sku": "widget-42", "quantity": 1,
     "amount_cents": 9999, "card_token": "tok_visa"}
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from conveyor import Flow, NonRetryableError, RetryPolicy, StepContext, resource, task
from examples.orders import services
from examples.orders.adapters.payments import CardDeclinedError, IdempotencyKeyReusedError
from examples.orders.domain import CardToken
from examples.orders.system import OrderSystem


class TutorialOrder(BaseModel):
    """What the tutorial's input must hold at the door: its card is a token, never a card number.

    The rest of the tutorial's dict is kept as it is (its steps read it as a dict).
    """

    model_config = ConfigDict(extra="allow")

    card_token: CardToken = "tok_visa"


@task
def validate_order(order: dict[str, Any]) -> dict[str, Any]:
    """Validate order data and business rules."""
    if order.get("amount_cents", 0) <= 0:
        raise ValueError("Invalid amount: must be positive")
    if not order.get("customer_email"):
        raise ValueError("Customer email is required")
    return {**order, "validated": True}


def refund_charge(
    payment: dict[str, Any], context: StepContext, system: OrderSystem = resource("system")
) -> None:
    """Undo of ``charge_payment``: refund it."""
    services.refund_payment(system, payment["payment_id"], context.idempotency_key)


@task(
    timeout_secs=30,
    retries=RetryPolicy(
        max_retries=3,
        initial_delay_secs=1.0,
        backoff_multiplier=2.0,
        non_retryable_errors=(CardDeclinedError, IdempotencyKeyReusedError),
    ),
    compensate=refund_charge,
)
def charge_payment(
    order: dict[str, Any], context: StepContext, system: OrderSystem = resource("system")
) -> dict[str, Any]:
    """Charge payment with automatic retries; the idempotency key makes the retries charge once."""
    charge = system.gateway.charge(
        amount_cents=order["amount_cents"],
        currency="usd",
        card_token=order["card_token"],
        reference=f"tutorial-{order['order_id']}",
        idempotency_key=context.idempotency_key,
    )
    return {**order, "payment_id": charge.id, "charged": True}


@task
def check_inventory(order: dict[str, Any], system: OrderSystem = resource("system")) -> dict[str, Any]:
    """Verify the item is in stock."""
    with system.db.transaction(readonly=True) as tx:
        available = system.inventory.available(tx).get(order["sku"], 0)
    return {**order, "in_stock": available >= order.get("quantity", 1)}


@task
def finalize(results: dict[str, Any]) -> str:
    """Combine results from parallel branches; an item out of stock fails the order (and refunds it)."""
    payment = results["charge_payment"]
    inventory = results["check_inventory"]
    if not inventory["in_stock"]:
        raise NonRetryableError(f"{inventory['sku']} is out of stock")
    return f"Order complete: paid={payment['charged']}, stock={inventory['in_stock']}"


tutorial_order = (
    Flow("orders.tutorial", input_schema=TutorialOrder)
    .then(validate_order)
    .fork()
    .branch(charge_payment)
    .branch(check_inventory)
    .join(finalize)
    .build()
)
"""Seed 003's order-v2 flow: ``run_durable_workflow(tutorial_order, "order-1001", order, backend)``."""
