"""Seed 000's "key metrics to track", read off conveyor's Prometheus metrics.

The seed lists, for its order-processing reactor: success rates (order processing, payment, inventory
reservation), performance (average order processing time, payment latency) and error rates (insufficient
inventory, payment failure, email delivery failure). Each is one expression over the metrics every worker
serves (``conveyor worker --metrics-port``); this example runs thirty orders in process with
``Conveyor(metrics=True)`` and computes them from ``app.metrics`` the way the PromQL in
docs/observability.md does over a scrape:

    python -m examples.extensions.key_metrics
"""

from __future__ import annotations

import sys
from typing import Any

from conveyor import Backend, Conveyor, Flow, InMemoryBackend, NonRetryableError, RetryPolicy, task

FLAKY_EMAILS = {4, 11}  # the mail server drops these orders' first attempt
NO_STOCK = {7, 19, 23}
DECLINED = {5, 13}


class InsufficientInventory(NonRetryableError):
    """Not enough stock: no retry will help."""


class PaymentDeclined(NonRetryableError):
    """The card was declined."""


_email_attempts: dict[int, int] = {}


@task
def validate_order(order: dict[str, Any]) -> dict[str, Any]:
    return order


@task
def reserve_inventory(order: dict[str, Any]) -> dict[str, Any]:
    if order["order_id"] in NO_STOCK:
        raise InsufficientInventory(f"order {order['order_id']}: not enough widgets")
    return {**order, "reservation": f"res_{order['order_id']}"}


@reserve_inventory.compensate
def release_reservation(order: dict[str, Any]) -> None:
    return None


@task
def charge_payment(order: dict[str, Any]) -> dict[str, Any]:
    if order["order_id"] in DECLINED:
        raise PaymentDeclined("Payment failed: card declined")
    return {**order, "payment_id": f"pay_{order['order_id']}"}


@task(retries=RetryPolicy(max_retries=2, initial_delay_secs=0.001))
def send_confirmation_email(order: dict[str, Any]) -> dict[str, Any]:
    number = order["order_id"]
    _email_attempts[number] = _email_attempts.get(number, 0) + 1
    if number in FLAKY_EMAILS and _email_attempts[number] == 1:
        raise ConnectionError("SMTP connection reset")
    return {**order, "emailed": True}


ORDER_PROCESSING = (
    Flow("order_processing", version="1")
    .then(validate_order)
    .then(reserve_inventory)
    .then(charge_payment)
    .then(send_confirmation_email)
    .build()
)


def key_metrics(app: Conveyor) -> dict[str, float]:
    """Seed 000's key metrics from the runtime's counters and histograms (ratios in [0, 1], seconds)."""
    registry = app.metrics.registry

    def value(name: str, **labels: str) -> float:
        found = registry.get_sample_value(name, {"workflow": "order_processing", **labels})
        return 0.0 if found is None else found

    def attempts(step: str, outcome: str) -> float:
        return value("conveyor_step_attempts_total", step=step, outcome=outcome)

    def success_rate(step: str) -> float:
        done, failed = attempts(step, "completed"), attempts(step, "failed")
        return done / (done + failed) if done + failed else 0.0

    finished = sum(
        value("conveyor_runs_finished_total", state=state)
        for state in (
            "completed",
            "failed",
            "compensated",
            "compensation_failed",
            "cancelled",
            "dead_lettered",
        )
    )
    completed = value("conveyor_runs_finished_total", state="completed")
    durations = [
        (
            value("conveyor_run_duration_seconds_sum", state=state),
            value("conveyor_run_duration_seconds_count", state=state),
        )
        for state in ("completed", "failed", "compensated")
    ]
    total_time, runs_timed = sum(d[0] for d in durations), sum(d[1] for d in durations)
    payment_time = sum(
        value("conveyor_step_duration_seconds_sum", step="charge_payment", outcome=outcome)
        for outcome in ("completed", "failed")
    )
    payment_attempts = attempts("charge_payment", "completed") + attempts("charge_payment", "failed")
    started = value("conveyor_runs_started_total")
    return {
        "order_processing_success_rate": completed / finished if finished else 0.0,
        "payment_success_rate": success_rate("charge_payment"),
        "inventory_reservation_success_rate": success_rate("reserve_inventory"),
        "average_order_processing_time": total_time / runs_timed if runs_timed else 0.0,
        "payment_processing_latency": payment_time / payment_attempts if payment_attempts else 0.0,
        "inventory_insufficient_rate": attempts("reserve_inventory", "failed") / started if started else 0.0,
        "payment_failure_rate": 1.0 - success_rate("charge_payment"),
        "email_delivery_failure_rate": 1.0 - success_rate("send_confirmation_email"),
    }


def main(backend: Backend | None = None) -> int:
    """Run thirty orders and print the key metrics; 0 when each is what those orders make it."""
    _email_attempts.clear()
    app = Conveyor(backend or InMemoryBackend(), workflows=[ORDER_PROCESSING], metrics=True)
    for number in range(1, 31):
        app.run("order_processing", {"order_id": number}, workflow_id=f"order-{number}")
    figures = key_metrics(app)
    for name, figure in figures.items():
        shown = f"{figure * 1000:.2f} ms" if name.endswith(("time", "latency")) else f"{figure:.1%}"
        print(f"{name:38} {shown}")
    expected = {
        "order_processing_success_rate": 25 / 30,
        "payment_success_rate": 25 / 27,
        "inventory_reservation_success_rate": 27 / 30,
        "inventory_insufficient_rate": 3 / 30,
        "payment_failure_rate": 2 / 27,
        "email_delivery_failure_rate": 2 / 27,
    }
    wrong = {name: figures[name] for name, want in expected.items() if abs(figures[name] - want) > 1e-9}
    if wrong:
        print(f"unexpected figures: {wrong}")
        return 1
    return 0 if figures["average_order_processing_time"] > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
