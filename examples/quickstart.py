"""A short tour of conveyor on the embedded SQLite default: what ``make demo`` runs.

Fifty orders go through a checkout workflow (validate, then charge the card and reserve stock at the same
time, then confirm) against a flaky payment gateway: some charges fail once and are retried with backoff,
some cards are declined (non-retryable), and then the reservation is released by compensation. Every run is
checkpointed in ``demo.db``; run the demo twice and the second run finds every order already done.
"""

from __future__ import annotations

import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from conveyor import (
    Flow,
    NonRetryableError,
    RetryPolicy,
    SqliteBackend,
    StepContext,
    run_durable_workflow,
    task,
)

CHARGED: dict[str, int] = {}  # idempotency key -> cents: what the "gateway" has charged
RESERVED: dict[str, int] = {}  # reservation id -> units held


@task
def validate(order: dict[str, Any]) -> dict[str, Any]:
    """Refuse orders without items or with a non-positive total."""
    if order["quantity"] <= 0 or order["amount_cents"] <= 0:
        raise NonRetryableError(f"order {order['order_id']} is empty")
    return order


def refund(payment: dict[str, Any]) -> None:
    """Undo a charge."""
    CHARGED.pop(payment["key"], None)


@task(retries=RetryPolicy(max_retries=3, initial_delay_secs=0.01, backoff_multiplier=2.0), compensate=refund)
def charge(order: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    """Charge the card once per idempotency key, however often this step is retried."""
    rng = random.Random(f"{order['order_id']}:{ctx.attempt}")
    if order["card"] == "declined":
        raise NonRetryableError("card declined")
    if ctx.attempt == 1 and rng.random() < 0.3:
        raise ConnectionError("payment gateway timed out")
    CHARGED.setdefault(ctx.idempotency_key, order["amount_cents"])
    return {"key": ctx.idempotency_key, "amount_cents": order["amount_cents"]}


def release(reservation: dict[str, Any]) -> None:
    """Undo a reservation."""
    RESERVED.pop(reservation["reservation_id"], None)


@task(compensate=release)
def reserve(order: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    """Hold stock for the order."""
    reservation_id = f"res-{ctx.workflow_id}"
    RESERVED[reservation_id] = order["quantity"]
    return {"reservation_id": reservation_id}


@task
def confirm(results: dict[str, Any]) -> str:
    """Join the branches: the order is paid and its stock is held."""
    return (
        f"paid {results['charge']['amount_cents'] / 100:.2f}, holding {results['reserve']['reservation_id']}"
    )


CHECKOUT = (
    Flow("checkout", version="1").then(validate).fork().branch(charge).branch(reserve).join(confirm).build()
)


def main(database: str = "demo.db", orders: int = 50) -> int:
    """Run the demo and print a summary table; returns the process exit code."""
    started = time.perf_counter()
    states: Counter[str] = Counter()
    retries = 0
    compensated: list[str] = []
    with SqliteBackend(Path(database)) as backend:
        for number in range(1, orders + 1):
            order = {
                "order_id": number,
                "quantity": 1 + number % 3,
                "amount_cents": 1999 * (1 + number % 3),
                "card": "declined" if number % 10 == 0 else "visa",
            }
            status = run_durable_workflow(CHECKOUT, f"order-{number}", order, backend)
            states[status.state.value] += 1
            if status.is_failed():
                compensated.append(f"res-order-{number}")
            retries += sum(max(step.attempts - 1, 0) for step in status.steps)
            if number <= 3 or number == 10:
                outcome = status.output() if status.is_completed() else str(status.error())
                print(f"order-{number:<3} {status.state.value:<12} {outcome}")
    elapsed = time.perf_counter() - started
    print()
    print(f"{'final state':<14}{'orders':>8}")
    for state, count in sorted(states.items()):
        print(f"{state:<14}{count:>8}")
    print(f"{'retries':<14}{retries:>8}")
    print(f"{orders} orders in {elapsed:.2f} s; runs are stored in {database} (run again: nothing re-runs)")
    # A declined card must never leave stock held: its reservation was released by compensation.
    leaked = [reservation for reservation in compensated if reservation in RESERVED]
    if leaked:
        print(f"INVARIANT BROKEN: reservations still held for failed orders: {leaked}")
    return 1 if leaked else 0


if __name__ == "__main__":
    sys.exit(main())
