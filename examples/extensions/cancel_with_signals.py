"""Seed 003's third extension: order cancellation with signals.

::

    validate_order ─► charge_payment ─► wait for "ship" or "cancel" (up to 2 days) ─► ship_order

After the charge, the run waits for the first of two signals, holding no worker slot while it does: the
warehouse sends ``ship`` when the parcel is packed, or the customer sends ``cancel``. ``ship_order``
reads which came: on ``cancel`` it refuses to ship, and the charge is refunded (its undo); the run ends
``compensated``, its error naming the customer's reason. Either signal may come before the run reaches
its wait: it is kept until then. Without either within two days the wait fails, and the order is undone
the same way.

The other way is the runtime's own cancel: ``cancel_workflow(workflow_id, reason)`` (``app.cancel``)
stops a waiting run at once, undoes the charge, and ends it ``cancelled`` with the reason, with no step
of the workflow written for it. The signal is the business's "cancel" (a step decides what it means);
``cancel_workflow`` is the operator's, and works on any workflow.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from conveyor import Backend, Conveyor, Flow, InMemoryBackend, NonRetryableError, StepContext, task
from examples.extensions.shop import ORDER, Shop, charge_payment, validate_order


class OrderCancelledBySignal(NonRetryableError):
    """The customer sent ``cancel`` before the order shipped."""


@task
def ship_order(decision: dict[str, Any], context: StepContext) -> str:
    """Ship the order the warehouse packed; refuse one the customer cancelled.

    It receives the wait's result, ``{"signal": "ship" or "cancel", "payload": ...}``.
    """
    if decision["signal"] == "cancel":
        reason = (decision["payload"] or {}).get("reason", "no reason given")
        raise OrderCancelledBySignal(f"{context.workflow_id} cancelled by the customer: {reason}")
    return f"{context.workflow_id} shipped, tracking {decision['payload']['tracking']}"


order_cancellable = (
    Flow("order-cancellable")
    .then(validate_order)
    .then(charge_payment)
    .wait_for_signal(["ship", "cancel"], timeout="2d", step_name="ship_or_cancel")
    .then(ship_order)
    .build()
)


def main(backend: Backend | None = None) -> int:
    """Three orders: shipped by signal, cancelled by signal, cancelled with cancel_workflow while waiting."""
    shop = Shop()
    ids = ("order-1001", "order-1002", "order-1003")
    with Conveyor(backend or InMemoryBackend(), workflows=[order_cancellable]) as app:
        app.resources.add("shop", shop)
        worker = app.worker(concurrency=4, poll_interval_seconds=0.05)
        working = threading.Thread(target=worker.run, daemon=True)
        working.start()
        for workflow_id in ids:
            app.start(order_cancellable, {**ORDER, "order_id": int(workflow_id[6:])}, workflow_id=workflow_id)
        _wait_until(lambda: all(app.status(workflow_id).is_waiting() for workflow_id in ids))
        print("all three are charged and wait for a signal, holding no worker slot")
        app.send_signal("order-1001", "ship", {"tracking": "TRK-1"})
        app.send_signal("order-1002", "cancel", {"reason": "ordered the wrong size"})
        app.cancel("order-1003", "fraud team: stolen card")  # the runtime's cancel: no signal needed
        _wait_until(lambda: not any(app.status(workflow_id).is_running() for workflow_id in ids))
        worker.stop()
        working.join(10)
        shipped, by_signal, by_cancel = (app.status(workflow_id) for workflow_id in ids)
    print(f"order-1001: {shipped.state.value}: {shipped.output()}")
    print(f"order-1002: {by_signal.state.value}: {by_signal.error()}")
    print(f"order-1003: {by_cancel.state.value}: {by_cancel.cancel_reason}")
    print(f"  refunded: {sorted(shop.refunds)}")
    ok = shipped.is_completed() and by_signal.is_failed() and by_cancel.is_cancelled()
    return 0 if ok and len(shop.refunds) == 2 else 1


def _wait_until(condition: Callable[[], bool], seconds: float = 30.0) -> None:
    """Wait (a worker thread does the work) until ``condition`` holds; TimeoutError after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the runs did not get there in time")
        time.sleep(0.02)


if __name__ == "__main__":
    raise SystemExit(main())
