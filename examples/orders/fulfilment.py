"""The order workflow, written with conveyor's Flow builder: every side effect paired with its undo.

::

    accept_order ─► reserve_stock ─► charge_payment ─► ship_order ─► complete_order
       undo:            undo:            undo:             undo:
    settle (failed    release the     refund the        cancel the
    or cancelled)     reservation     charge            label

Each step hands the next an :class:`OrderProgress` with what it did. When a step fails for good (a declined
card, an empty shelf, an address the carrier refuses), or the customer cancels and the API cancels the run
(``shop.cancel``, conveyor's ``cancel_workflow``), conveyor runs the undo of every completed step, newest
first; the first step's undo runs last and settles the order as ``failed`` (or ``cancelled``, with the
run's reason). A completed order is undone the same way (``shop.compensate``). ``charge_payment`` passes
its step's ``idempotency_key`` to the gateway, so the retries that transient errors and lost responses
cause charge the card once. Completing the order queues its
confirmation email in the same transaction; the relay sends it, so a failing email never reaches this
workflow.

Every step gets the shop's :class:`~examples.orders.system.OrderSystem` from the runtime that runs it, as
the parameter ``system: OrderSystem = resource("system")``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from conveyor import Flow, RetryPolicy, StepContext, resource, task
from examples.orders import services
from examples.orders.services import PERMANENT_ERRORS
from examples.orders.system import OrderSystem

STEP_RETRIES = RetryPolicy(
    max_attempts=5,
    initial_delay_secs=0.1,
    max_delay_secs=2.0,
    jitter=0.2,
    non_retryable_errors=PERMANENT_ERRORS,
)
"""Database hiccups and a carrier's bad moment: a few quick retries. Business errors fail at once."""
CHARGE_RETRIES = RetryPolicy(
    max_attempts=8,
    initial_delay_secs=0.1,
    max_delay_secs=2.0,
    jitter=0.2,
    non_retryable_errors=PERMANENT_ERRORS,
)
"""The gateway's 503s and lost responses are retried with the same idempotency key; declines are not."""
UNDO_RETRIES = RetryPolicy(max_attempts=12, initial_delay_secs=0.1, max_delay_secs=2.0, jitter=0.2)
"""An undo must happen: a refund or a release is retried for a long while before a person is called."""


class OrderInput(BaseModel):
    """The workflow's input: which order to process."""

    model_config = ConfigDict(extra="forbid")  # an unexpected field (a card, say) is refused, not dropped

    order_id: str = Field(min_length=1)


class OrderProgress(BaseModel):
    """What the steps have done so far, handed from each step to the next (and to its undo)."""

    order_id: str
    total_cents: int
    reservation_id: str | None = None
    payment_id: str | None = None
    shipment_id: str | None = None


def settle(progress: OrderProgress, context: StepContext, system: OrderSystem = resource("system")) -> None:
    """Undo of ``accept_order``: refund whatever is still charged, restock, end ``failed``, or ``cancelled``
    with the reason the run was cancelled with (``context.cancel_reason``)."""
    services.settle_failed_order(system, progress.order_id, context.idempotency_key, context.cancel_reason)


@task(compensate=settle)
def accept_order(order: OrderInput, system: OrderSystem = resource("system")) -> OrderProgress:
    """Read the order the workflow is for."""
    found = services.get_order(system, order.order_id)
    return OrderProgress(order_id=found.id, total_cents=found.total_cents)


def release(progress: OrderProgress, system: OrderSystem = resource("system")) -> None:
    """Undo of ``reserve_stock``: put the units back on the shelf."""
    services.release_stock(system, progress.order_id)


@task(compensate=release)
def reserve_stock(progress: OrderProgress, system: OrderSystem = resource("system")) -> OrderProgress:
    """Hold the order's units; the database refuses to go below zero (out of stock fails the order)."""
    reservation_id = services.reserve_stock(system, progress.order_id)
    return progress.model_copy(update={"reservation_id": reservation_id})


def refund(progress: OrderProgress, context: StepContext, system: OrderSystem = resource("system")) -> None:
    """Undo of ``charge_payment``: refund the charge (the undo's own idempotency key refunds it once)."""
    if progress.payment_id is not None:
        services.refund_payment(system, progress.payment_id, context.idempotency_key)


@task(retries=CHARGE_RETRIES, compensate=refund)
def charge_payment(
    progress: OrderProgress, context: StepContext, system: OrderSystem = resource("system")
) -> OrderProgress:
    """Charge the card with the step's idempotency key: the same on every attempt, so one charge."""
    payment_id = services.charge_order(system, progress.order_id, context.idempotency_key)
    return progress.model_copy(update={"payment_id": payment_id})


def cancel_label(progress: OrderProgress, system: OrderSystem = resource("system")) -> None:
    """Undo of ``ship_order``: cancel the shipping label."""
    services.cancel_shipment(system, progress.order_id)


@task(compensate=cancel_label)
def ship_order(progress: OrderProgress, system: OrderSystem = resource("system")) -> OrderProgress:
    """Book the carrier; a refused address fails the order, after it was paid (then: refund, restock)."""
    shipment_id = services.ship_order(system, progress.order_id)
    return progress.model_copy(update={"shipment_id": shipment_id})


@task
def complete_order(progress: OrderProgress, system: OrderSystem = resource("system")) -> OrderProgress:
    """Mark the order completed and queue its confirmation email, in one transaction."""
    services.complete_order(system, progress.order_id)
    return progress


order_fulfilment = (
    Flow(
        "order_fulfilment",
        version="1",
        description="Reserve, charge, ship and complete one order; undo all of it if any step fails for good",
        input_schema=OrderInput,
        retries=STEP_RETRIES,
        compensation_retries=UNDO_RETRIES,
    )
    .then(accept_order)
    .then(reserve_stock)
    .then(charge_payment)
    .then(ship_order)
    .then(complete_order)
    .build()
)
"""The order workflow the API starts for every order (``workflow_id`` ``order-<order id>``)."""
