"""What the extensions share: seed 003's tutorial tasks, over a small in-memory shop kept as a resource.

The tutorial's ``charge_payment`` charged nothing; here it charges a :class:`Shop`'s gateway with the
step's idempotency key (a retried charge is made once) and its undo refunds it, so the extensions can
show what is undone when an order is cancelled or refused. Every task asks for the shop as the runtime's
resource ``"shop"`` (``shop: Shop = resource("shop")``): nothing here is global.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from conveyor import NonRetryableError, RetryPolicy, StepContext, resource, task

ORDER: dict[str, Any] = {
    "order_id": 1001,
    "customer_email": "alice@example.com",
    "product_id": "widget-42",
    "amount": 99.99,
}
"""The tutorial's order."""


@dataclass
class Shop:
    """A payment gateway, a warehouse and a stock count, in memory, with faults on demand."""

    stock: dict[str, int] = field(default_factory=lambda: {"widget-42": 10})
    charges: dict[str, float] = field(default_factory=dict)
    """Idempotency key -> amount charged (a key charged twice is charged once)."""
    refunds: list[str] = field(default_factory=list)
    warehouse: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Idempotency key -> the pick request the warehouse received (it keeps one per key)."""
    warehouse_outages: int = 0
    """How many calls the warehouse refuses before it answers (it is down for a moment)."""
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def charge(self, key: str, amount: float) -> str:
        """Charge ``amount`` once per ``key``; the payment id."""
        with self.lock:
            self.charges.setdefault(key, amount)
        return f"pay-{key}"

    def refund(self, payment_id: str) -> None:
        """Refund a payment (once)."""
        with self.lock:
            if payment_id not in self.refunds:
                self.refunds.append(payment_id)

    def notify_warehouse(self, key: str, request: dict[str, Any]) -> None:
        """Ask the warehouse to pick an order; ``ConnectionError`` while it is down."""
        with self.lock:
            if self.warehouse_outages > 0:
                self.warehouse_outages -= 1
                raise ConnectionError("the warehouse system did not answer")
            self.warehouse.setdefault(key, request)

    @property
    def net_charged(self) -> float:
        """What was charged and not refunded."""
        return sum(amount for key, amount in self.charges.items() if f"pay-{key}" not in self.refunds)


@task
def validate_order(order: dict[str, Any]) -> dict[str, Any]:
    """Validate order data and business rules (the tutorial's task)."""
    if order.get("amount", 0) <= 0:
        raise NonRetryableError("Invalid amount: must be positive")
    if not order.get("customer_email"):
        raise NonRetryableError("Customer email is required")
    return {**order, "validated": True}


def refund_payment(payment: dict[str, Any], shop: Shop = resource("shop")) -> None:
    """Undo of ``charge_payment``: refund the charge."""
    shop.refund(payment["payment_id"])


@task(
    timeout_secs=30,
    retries=RetryPolicy(max_retries=3, initial_delay_secs=0.01, backoff_multiplier=2.0),
    compensate=refund_payment,
)
def charge_payment(
    order: dict[str, Any], context: StepContext, shop: Shop = resource("shop")
) -> dict[str, Any]:
    """Charge the order's amount with the step's idempotency key (the tutorial's task, charging for real)."""
    if order.get("card") == "declined":
        raise NonRetryableError("Payment failed: card declined")
    payment_id = shop.charge(context.idempotency_key, order["amount"])
    return {**order, "payment_id": payment_id, "charged": True}


@task
def send_confirmation(order: dict[str, Any]) -> str:
    """Send order confirmation email (the tutorial's task)."""
    return f"Order {order['order_id']} confirmed (payment: {order['payment_id']})"
