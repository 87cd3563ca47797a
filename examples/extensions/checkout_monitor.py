"""Seed 002's ``CheckoutMonitor``: alert the payments team the moment a payment step fails, and count
completed checkouts with their duration.

The Tasker original::

    class CheckoutMonitor < Tasker::EventSubscriber::Base
      subscribe_to 'step.failed', 'task.completed'

      def handle_step_failed(event)
        if event[:namespace] == 'ecommerce' && event[:step_name] == 'process_payment'
          SlackAPI.post_message(channel: '#payments-critical',
                                text: "Payment failure in checkout: #{event[:error_message]}",
                                metadata: { correlation_id: event[:correlation_id] })
        end
      end

      def handle_task_completed(event)
        Metrics.increment('checkout.completed', { namespace: event[:namespace],
                                                  duration_ms: event[:total_duration] })
      end
    end

Here the same class subscribes with ``app.subscribe(CheckoutMonitor())``: ``subscribe_to`` keeps the seed's
names (``"task.completed"`` is conveyor's ``run.completed``) and each is taken by its ``handle_`` method.
The event's fields: ``event.workflow_name`` is ``"ecommerce.process_order"`` (the namespace and the name),
``event.step``, ``event.error_message``, ``event.correlation_id``, and a finished run's
``event.data["duration_seconds"]``. Slack and the metrics client are a function and a counter here.

Delivered in process, the monitor is told soon after each change and misses what happens while its
process is down. ``app.subscribe(CheckoutMonitor(), durable="checkout-monitor")`` makes it durable: it
reads the history from a cursor under that name, at least once, resumed after a restart (``conveyor
worker`` runs it; see docs/observability.md).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from conveyor import (
    Backend,
    Conveyor,
    Event,
    InMemoryBackend,
    NonRetryableError,
    RetryPolicy,
    Saga,
    StepContext,
    from_result,
    resource,
    step,
)

PAYMENT_STEP = "process_payment"
CHECKOUT_WORKFLOW = "ecommerce.process_order"


class CheckoutMonitor:
    """Alerts on every failed payment attempt; counts completed checkouts and their durations."""

    subscribe_to = ("step.failed", "task.completed")

    def __init__(self, post_message: Callable[[str, str], None]) -> None:
        self.post_message = post_message
        """Where alerts go: ``post_message(channel, text)`` (Slack in the seed)."""
        self.completed = 0
        self.durations_ms: list[int] = []
        self._lock = threading.Lock()

    def handle_step_failed(self, event: Event) -> None:
        """A payment attempt failed: tell #payments-critical, saying whether it will be tried again."""
        if event.workflow_name == CHECKOUT_WORKFLOW and event.step == PAYMENT_STEP:
            outcome = "for good" if event.data.get("final") else "will retry"
            self.post_message(
                "#payments-critical",
                f"Payment failure in checkout: {event.error_message} (attempt {event.attempt}, {outcome}) "
                f"[correlation id {event.correlation_id}]",
            )

    def handle_task_completed(self, event: Event) -> None:
        """A checkout completed: count it, with how long the whole run took."""
        if event.workflow_name == CHECKOUT_WORKFLOW:
            with self._lock:
                self.completed += 1
                self.durations_ms.append(round(event.data["duration_seconds"] * 1000))


@dataclass
class Gateway:
    """A payment gateway that times out ``timeouts`` times, then charges (once per idempotency key)."""

    timeouts: int = 0
    charges: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def charge(self, token: str, amount: float, key: str) -> str:
        """Charge ``amount`` to the card ``token``; the payment id."""
        with self.lock:
            if self.timeouts > 0:
                self.timeouts -= 1
                raise TimeoutError("payment gateway timed out")
            if token == "tok_declined":
                raise NonRetryableError("card declined")
            self.charges.setdefault(key, amount)
        return f"pi_{key[-8:]}"


class ProcessOrder(Saga):
    """Seed 002's checkout, cut to the steps the monitor watches."""

    namespace = "ecommerce"
    workflow_name = "process_order"
    version = "1.0.0"

    @step
    def validate_cart(self, cart_items: list[dict[str, Any]]) -> dict[str, float]:
        """Price the cart."""
        if not cart_items:
            raise NonRetryableError("the cart is empty")
        return {"total": round(sum(item["price"] * item["quantity"] for item in cart_items), 2)}

    @step(
        total=from_result(validate_cart, "total"),
        retries=RetryPolicy(max_retries=2, initial_delay_secs=0.01),
    )
    def process_payment(
        self,
        total: float,
        payment_info: dict[str, str],
        context: StepContext,
        gateway: Gateway = resource("gateway"),
    ) -> dict[str, Any]:
        """Charge the card (with the step's idempotency key: a retried charge is made once)."""
        payment_id = gateway.charge(payment_info["token"], total, context.idempotency_key)
        return {"payment_id": payment_id, "amount_charged": total}

    @step(payment_id=from_result(process_payment, "payment_id"))
    def create_order(self, payment_id: str) -> dict[str, str]:
        """Record the order."""
        return {"order_id": f"order-for-{payment_id}"}


CARTS = {
    "order-1001": ("tok_visa", [{"sku": "mug", "price": 12.5, "quantity": 2}]),
    "order-1002": ("tok_visa", [{"sku": "tee", "price": 20.0, "quantity": 1}]),
    "order-1003": ("tok_declined", [{"sku": "hat", "price": 15.0, "quantity": 1}]),
}


def main(backend: Backend | None = None) -> int:
    """Three checkouts (the gateway times out once; one card is declined), watched by the monitor."""
    alerts: list[str] = []
    monitor = CheckoutMonitor(lambda channel, text: alerts.append(f"{channel}: {text}"))
    with Conveyor(backend or InMemoryBackend(), workflows=[ProcessOrder]) as app:
        app.resources.add("gateway", Gateway(timeouts=1))
        app.subscribe(monitor)
        outcomes = {}
        for order_id, (token, cart) in CARTS.items():
            status = app.run(
                ProcessOrder,
                {"cart_items": cart, "payment_info": {"token": token}},
                workflow_id=order_id,
                correlation_id=f"req-{order_id[-4:]}",
            )
            outcomes[order_id] = status
            print(
                f"{order_id}: {status.state.value}" + ("" if status.is_completed() else f": {status.error()}")
            )
        app.flush_subscribers()
    print("alerts:")
    for alert in alerts:
        print(f"  {alert}")
    durations = ", ".join(f"{ms} ms" for ms in monitor.durations_ms)
    print(f"checkout.completed: {monitor.completed} (durations: {durations})")
    completed = [order_id for order_id, status in outcomes.items() if status.is_completed()]
    expected_alerts = [
        "payment gateway timed out (attempt 1, will retry)",
        "card declined (attempt 1, for good)",
    ]
    alerted = all(any(text in alert for alert in alerts) for text in expected_alerts) and len(alerts) == 2
    return 0 if completed == ["order-1001", "order-1002"] and monitor.completed == 2 and alerted else 1


if __name__ == "__main__":
    raise SystemExit(main())
